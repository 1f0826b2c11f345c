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
LAST_MAX = 200  # the last column of a stream (reasons, details) may run longer


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


def emit_json_stream(records) -> int:
    """Print an iterable of JSON-ready records as one JSON array, a record at a time (constant memory)."""
    n = 0
    for rec in records:
        click.echo(("[\n  " if n == 0 else ",\n  ") + json.dumps(rec, sort_keys=True, default=str), nl=False)
        n += 1
    click.echo("\n]" if n else "[]")
    return n


class Columns:
    """Rows printed as they come, in columns of fixed widths (streams of any length: no buffering).

        >>> cols = Columns(("id", 6), ("user", 16), ("reason", 0))      # 0: the rest of the line
        >>> cols.header(); cols.row([42, "anna", "Unknown user"])       # doctest: +SKIP
    """

    def __init__(self, *spec: tuple[str, int]):
        self.spec = spec

    def _line(self, cells: list[str]) -> str:
        out = []
        for (_, width), value in zip(self.spec, cells):
            out.append(value.ljust(width) if width else value)
        return "  ".join(out).rstrip()

    def header(self) -> None:
        click.echo(self._line([name for name, _ in self.spec]))

    def row(self, values: list[Any]) -> None:
        cells = []
        for (_, width), value in zip(self.spec, values):
            shown = cell(value, limit=width or LAST_MAX)
            if width and len(shown) > width:  # the escape's length note does not fit: cut to the column
                shown = shown[: width - 1] + "…"
            cells.append(shown)
        click.echo(self._line(cells))


def daemon_line(daemon: dict) -> str:
    """``running (pid 812, seen 1s ago)`` or ``not running (last seen 2026-11-30 08:02:11, 3h05m ago)``."""
    seen = daemon.get("last_seen")
    if daemon.get("running"):
        return f"running (pid {daemon.get('pid')}, seen {age(seen)} ago)"
    when = f"last seen {local(seen)}, {age(seen)} ago" if seen else "never seen"
    if daemon.get("state") == "not responding":
        return f"NOT RESPONDING (pid {daemon.get('pid')} alive, {when})"
    return f"not running ({when})"
