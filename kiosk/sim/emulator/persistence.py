"""The ``--data`` file: the emulator's entries on disk, surviving ``kill -9``.

Every acknowledged change is on disk before the answer is sent: the file is
rewritten whole (temp file, fsync, rename, fsync of the directory), so a kill
at any instant leaves either the old or the new file, never a torn one. The
format is one JSON object with one entry per line::

    {"format": "kiosk-emulator/1", "next_id": 3, "entries": [
    {"ID": 1, "user": "anna", ...},
    {"ID": 2, ...}
    ]}

A file that is not of this shape is refused at start with a message saying
what is wrong, and left as it was.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kiosk import files

from .model import COORDINATES, STORED, UPDATABLE, ApiError, apply_fields

log = logging.getLogger(__name__)

DATA_FORMAT = "kiosk-emulator/1"


class DataFile:
    """One emulator data file.

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tt.json"
        >>> data = DataFile(path)
        >>> data.check_dir(); data.load()
        ({}, 1)
        >>> data.write([], 1); data.load()
        ({}, 1)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DataFile({str(self.path)!r})"

    def check_dir(self) -> None:
        """Fail at start (ValueError), not with a 500 on every change, when the file cannot be written."""
        path = self.path
        folder = path.parent
        if not folder.is_dir():
            what = "is not a directory" if folder.exists() else "does not exist"
            raise ValueError(f"{path}: cannot keep emulator data there: the directory {folder} {what}")
        if path.is_dir():
            raise ValueError(f"{path}: cannot keep emulator data there: it is a directory")
        try:  # what every change does: a temp file next to the data file
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise ValueError(f"{path}: cannot keep emulator data there: cannot write in {folder} "
                             f"({e.strerror or e})") from None

    def load(self) -> tuple[dict[int, dict[str, Any]], int]:
        """The stored records by ID and the next ID; an absent file is empty. ValueError if unusable."""
        path = self.path
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a kill mid-write
            try:
                stale.unlink()
            except OSError:
                pass
        if not path.exists():
            return {}, 1
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not an emulator data file (not UTF-8 text)") from None
        except OSError as e:
            raise ValueError(f"{path}: cannot read emulator data ({e.strerror or e})") from None
        try:
            entries, next_id = parse(text)
        except ValueError as e:
            raise ValueError(f"{path}: not an emulator data file ({e})") from None
        log.info("loaded %d entries from %s", len(entries), path)
        return entries, next_id

    def write(self, lines: Iterable[str], next_id: int) -> None:
        """Replace the file atomically with these entry lines (JSON objects); OSError if it cannot."""
        try:
            self._write(lines, next_id)
        except OSError as e:
            log.error("cannot write %s: %s", self.path, e)
            raise

    def _write(self, lines: Iterable[str], next_id: int) -> None:
        with files.replaced(self.path) as f:
            f.write(f'{{"format": {json.dumps(DATA_FORMAT)}, "next_id": {int(next_id)}, "entries": [\n')
            f.write(",\n".join(lines))
            f.write("\n]}\n")


def parse(text: str) -> tuple[dict[int, dict[str, Any]], int]:
    """Entries by ID and the next ID from a data file's text; ValueError saying what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != DATA_FORMAT:
        raise ValueError(f'expected a JSON object with "format": "{DATA_FORMAT}"')
    next_id, rows = data.get("next_id"), data.get("entries")
    if isinstance(next_id, bool) or not isinstance(next_id, int) or next_id < 1:
        raise ValueError(f"next_id: expected a whole number, 1 or more, got {next_id!r}")
    if not isinstance(rows, list):
        raise ValueError(f"entries: expected a list, got {type(rows).__name__}")
    entries: dict[int, dict[str, Any]] = {}
    for n, record in enumerate(rows):
        where = f"entries[{n}]"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
        missing = [k for k in STORED if k not in record]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        ident = record["ID"]
        if isinstance(ident, bool) or not isinstance(ident, int) or ident < 1:
            raise ValueError(f"{where}: ID must be a whole number, 1 or more, got {ident!r}")
        if ident in entries:
            raise ValueError(f"{where}: ID {ident} appears twice")
        try:
            _check_stored(record)
        except (ApiError, ValueError, TypeError) as e:
            raise ValueError(f"entry {ident}: {e}") from None
        entries[ident] = record
    return entries, max([next_id, *(k + 1 for k in entries)])


def _check_stored(record: Mapping[str, Any]) -> None:
    """The checks a create applies, on a stored record (from a data file); raises ApiError or ValueError."""
    if not isinstance(record["user"], str) or not record["user"].strip():
        raise ValueError(f"user: expected a non-empty text, got {record['user']!r}")
    for name in ("deleted", "manual"):
        if not isinstance(record[name], bool):
            raise ValueError(f"{name}: expected true or false, got {record[name]!r}")
    if not isinstance(record["notes"], str):
        raise ValueError(f"notes: expected text, got {record['notes']!r}")
    # Timestamps, to after from, the break and the coordinates: on a copy, like an update.
    apply_fields({**record}, {k: record[k] for k in ("from", "to", "breakMinutes", *COORDINATES)}, UPDATABLE)
