"""How commands print: JSON for scripts, aligned tables for people, every stored value escaped.

Everything shown comes from the store or a server, so everything goes through
:func:`kiosk.text.escape` (no terminal escape sequences, no invisible
characters, long values cut) before it reaches the terminal.
"""

from __future__ import annotations

import json
from typing import Any

import click

from kiosk import clock, text

CELL_MAX = 60  # characters of one table cell; longer values are cut (the JSON output keeps them whole)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON (datetimes and other values as strings)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def age(iso: str | None) -> str:
    """How long ago ``iso`` was: ``42s``, ``17m``, ``3h05m``, ``4d``."""
    if not iso:
        return "-"
    seconds = int((clock.utcnow() - clock.from_iso(iso)).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def local(iso: str | None) -> str:
    """``iso`` (UTC) as local wall-clock time, the way the person at the door reads it."""
    if not iso:
        return "-"
    return clock.from_iso(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any, limit: int = CELL_MAX) -> str:
    """One table cell: escaped and cut to ``limit`` characters."""
    return text.escape("" if value is None else value, limit=limit)


def table(rows: list[list[Any]], headers: list[str]) -> None:
    """Print ``rows`` under ``headers`` in aligned columns (cells escaped and cut)."""
    if not rows:
        return
    cells = [[cell(c) for c in row] for row in rows]
    widths = [max(len(c) for c in col) for col in zip(headers, *cells)]
    for row in [headers, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
