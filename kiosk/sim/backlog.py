"""A week offline in a second: fill a store with queued entries, for tests and benchmarks.

Entries go in through one transaction per chunk, straight into the outbox, in
the same stored form as entries queued by taps (:class:`kiosk.model.OutboxEntry`).

    >>> with Store(path) as store:                       # doctest: +SKIP
    ...     ids = fill(store, 100_000, users=["anna", "ben"])
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kiosk import clock
from kiosk.model import OutboxEntry
from kiosk.store import Store
from kiosk.store.db import key

CHUNK = 5_000


def fill(store: Store, n: int, *, users: list[str] | None = None, start: datetime | None = None,
         kiosk_name: str = "backlog") -> list[int]:
    """Queue ``n`` one-hour entries (users in turn, an hour apart each), oldest first; their ids."""
    users = users or ["backlog"]
    start = start or clock.utcnow() - timedelta(hours=2 * n + 2)
    ids: list[int] = []
    now = clock.utcnow()
    while len(ids) < n:
        batch = min(CHUNK, n - len(ids))
        with store.transaction() as db:
            first = int(db.get("meta:seq", 0)) + 1
            records = {}
            for i in range(first, first + batch):
                begin = start + timedelta(hours=2 * (len(ids) + i - first))
                entry = OutboxEntry(id=i, username=users[i % len(users)], uid="04A1B2C3", start=begin,
                                    end=begin + timedelta(hours=1), notes=f"kiosk: {kiosk_name}",
                                    kiosk=kiosk_name, queued_at=now)
                records[key("outbox", i)] = entry.to_record()
            db.update(records)
            db["meta:seq"] = first + batch - 1
        ids.extend(range(first, first + batch))
    return ids
