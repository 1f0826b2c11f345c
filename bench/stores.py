"""Store files for the benchmarks: made once per run, copied for each process that needs one.

The fresh store holds :data:`STAFF` badge mappings (a site of 200 people);
the backlog store is the fresh one plus N entries queued through
:func:`kiosk.sim.backlog.fill` (a week-long outage at such a site).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from kiosk.sim import backlog
from kiosk.store import STORE_NAME, Store

STAFF = 200


def uid(i: int) -> str:
    """The badge of employee ``i``: a 4-byte UID with letters, so no reading rule is involved."""
    return f"04A1{i:04X}"


def badges() -> list[str]:
    return [uid(i) for i in range(STAFF)]


def fresh(directory: Path) -> Path:
    """A store with the staff's badges and nothing else; its path."""
    path = directory / STORE_NAME
    with Store(path, create=True) as store:
        for i in range(STAFF):
            store.add_badge(uid(i), f"employee{i:03d}")
    return path


def with_backlog(seed: Path, directory: Path, n: int) -> tuple[Path, float]:
    """A copy of ``seed`` with ``n`` entries queued; its path and the seconds the filling took."""
    path = copy(seed, directory)
    started = time.monotonic()
    with Store(path, create=False) as store:
        backlog.fill(store, n, users=[f"employee{i:03d}" for i in range(STAFF)])
    return path, time.monotonic() - started


def copy(seed: Path, directory: Path) -> Path:
    """A consistent copy of the store ``seed`` in ``directory`` (SQLite's backup API); the new path.

    Not a file copy: sqlitedict closes its connection in a thread of its own, so
    the -wal file may still be being checkpointed when ``close()`` returns.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / seed.name
    source = sqlite3.connect(seed)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
            dest.execute("PRAGMA journal_mode=WAL")
        finally:
            dest.close()
    finally:
        source.close()
    return target
