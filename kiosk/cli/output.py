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
    value = "" if value is None else str(value)
    if len(value) <= limit and value.isascii() and value.isprintable() and "\\" not in value:
        return value  # the common case, and nothing to escape in it (long listings spend their time here)
    return text.escape(value, limit=limit)


def table(rows: list[list[Any]], headers: list[str]) -> None:
    """Print ``rows`` under ``headers`` in aligned columns (cells escaped and cut)."""
    if not rows:
        return
    cells = [[cell(c) for c in row] for row in rows]
    widths = [max(len(c) for c in col) for col in zip(headers, *cells)]
    for row in [headers, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


STREAM_BATCH = 256  # records per write: constant memory, few system calls


def emit_json_stream(records) -> int:
    """Print an iterable of JSON-ready records as one JSON array, one record per line (constant memory)."""
    n = 0
    out = click.get_text_stream("stdout")
    batch: list[str] = []
    for rec in records:
        batch.append(("[\n  " if n == 0 else ",\n  ") + json.dumps(rec, sort_keys=True, default=str))
        n += 1
        if len(batch) >= STREAM_BATCH:
            out.write("".join(batch))
            batch.clear()
    batch.append("\n]\n" if n else "[]\n")
    out.write("".join(batch))
    out.flush()
    return n


class Columns:
    """Rows printed as they come, in columns of fixed widths (streams of any length: no buffering).

        >>> cols = Columns(("id", 6), ("user", 16), ("reason", 0))      # 0: the rest of the line
        >>> cols.header(); cols.row([42, "anna", "Unknown user"])       # doctest: +SKIP
    """

    def __init__(self, *spec: tuple[str, int]):
        self.spec = spec
        self._out = click.get_text_stream("stdout")
        self._batch: list[str] = []

    def flush(self) -> None:
        """Write the rows held back (:meth:`row` writes every :data:`STREAM_BATCH` rows)."""
        if self._batch:
            self._out.write("".join(self._batch))
            self._batch.clear()
        self._out.flush()

    def _line(self, cells: list[str]) -> str:
        out = []
        for (_, width), value in zip(self.spec, cells):
            out.append(value.ljust(width) if width else value)
        return "  ".join(out).rstrip()

    def header(self) -> None:
        self._batch.append(self._line([name for name, _ in self.spec]) + "\n")

    def row(self, values: list[Any]) -> None:
        cells = []
        for (_, width), value in zip(self.spec, values):
            shown = cell(value, limit=width or LAST_MAX)
            if width and len(shown) > width:  # the escape's length note does not fit: cut to the column
                shown = shown[: width - 1] + "…"
            cells.append(shown)
        self._batch.append(self._line(cells) + "\n")
        if len(self._batch) >= STREAM_BATCH:
            self.flush()


def daemon_line(daemon: dict) -> str:
    """``running (pid 812, seen 1s ago)`` or ``not running (last seen 2026-11-30 08:02:11, 3h05m ago)``."""
    seen = daemon.get("last_seen")
    if daemon.get("running"):
        return f"running (pid {daemon.get('pid')}, seen {age(seen)} ago)"
    when = f"last seen {local(seen)}, {age(seen)} ago" if seen else "never seen"
    if daemon.get("state") == "not responding":
        return f"NOT RESPONDING (pid {daemon.get('pid')} alive, {when})"
    return f"not running ({when})"
