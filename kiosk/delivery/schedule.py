"""Per-entry timing (due, waiting, settling, in flight) and the in-flight journal.

:class:`Schedule` answers "may this entry be tried now?" for each entry a page
of the queue brings. It remembers only entries that have a wait (a backoff, or
a settle time before the lookup of an ambiguous entry), keyed by id with a
monotonic due time, and at most ``limit`` of them: beyond that, an entry's
wait is worked out again from what the store keeps with it (``next_attempt``,
``ambiguous_at``, wall-clock times). So memory stays bounded whatever the size
of the queue: 100,000 queued entries cost nothing here, and 100,000 waiting
ones cost ``limit`` slots.

Monotonic times are preferred where known because the wall clock may jump (a
Pi's clock syncing at boot); the stored wall-clock times are kept plausible
(a wait found further ahead than ``horizon`` counts as ``horizon``; a settle
time whose start lies in the future is over), so a clock that jumped never
holds an entry forever.

:class:`Journal` is the crash-safety record: the ids of a batch are written
durably (status record ``sender_inflight``) before its first POST, and cleared
after its last answer. Whoever sends next after a crash marks the recorded
entries ambiguous, so each is looked up before it is sent again.

    >>> schedule = Schedule(limit=2)
    >>> schedule.defer(7, until=105.0)
    >>> schedule.remembered(7), len(schedule)
    (105.0, 1)
"""

from __future__ import annotations

import enum
import os
from datetime import datetime

from kiosk import clock as clk
from kiosk.model import OutboxEntry

INFLIGHT = "sender_inflight"  # status record: ids whose POST may be under way
LIMIT = 4096  # entries whose wait is remembered in memory at most


class Phase(enum.StrEnum):
    """Where an entry stands in the schedule."""

    DUE = "due"  # may be sent (or looked up) now
    WAITING = "waiting"  # a backoff after a failure
    SETTLING = "settling"  # ambiguous: the lookup waits until an earlier attempt surely ended on the server
    IN_FLIGHT = "in flight"  # part of the batch being sent now


def settle_left(entry: OutboxEntry, wall_now: datetime, settle: float) -> float:
    """Seconds until an ambiguous entry may be looked up (0: now, or not ambiguous)."""
    if not entry.ambiguous or entry.ambiguous_at is None:
        return 0.0
    age = (wall_now - entry.ambiguous_at).total_seconds()
    return settle - age if 0 <= age < settle else 0.0  # a clock that jumped back holds nothing forever


class Schedule:
    """Due times of entries that wait (bounded), and the batch in flight. Used by one thread at a time."""

    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self._due: dict[int, float] = {}  # entry id -> monotonic time it may be tried again
        self.in_flight: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self._due)

    def remembered(self, entry_id: int) -> float | None:
        return self._due.get(entry_id)

    def defer(self, entry_id: int, until: float) -> None:
        """Remember that ``entry_id`` waits until ``until`` (monotonic), if there is room."""
        if entry_id in self._due or len(self._due) < self.limit:
            self._due[entry_id] = until

    def done(self, entry_id: int) -> None:
        """The entry left the queue (or needs no wait any more)."""
        self._due.pop(entry_id, None)

    def prune(self, now: float) -> None:
        """Forget waits that are over (their entries are due, or left the queue)."""
        self._due = {i: t for i, t in self._due.items() if t > now}

    def clear(self) -> None:
        self._due.clear()

    def due_at(self, entry: OutboxEntry, now: float, wall_now: datetime, *, settle: float,
               horizon: float) -> float:
        """When ``entry`` may be tried (monotonic ``now`` or later). Only entries with a wait are remembered."""
        due = self._due.get(entry.id)
        if due is not None:
            return due
        due = now
        if entry.next_attempt is not None:  # a backoff from before a restart, if still plausible
            left = (entry.next_attempt - wall_now).total_seconds()
            if left > 0:
                due = now + min(left, horizon)
        due = max(due, now + settle_left(entry, wall_now, settle))
        if due > now:
            self.defer(entry.id, due)
        return due

    def phase(self, entry: OutboxEntry, now: float, wall_now: datetime, *, settle: float, horizon: float) -> Phase:
        """The entry's :class:`Phase` at ``now``."""
        if entry.id in self.in_flight:
            return Phase.IN_FLIGHT
        if self.due_at(entry, now, wall_now, settle=settle, horizon=horizon) <= now:
            return Phase.DUE
        return Phase.SETTLING if settle_left(entry, wall_now, settle) > 0 else Phase.WAITING


class Journal:
    """The in-flight record in the store: durable before a batch's first POST."""

    def __init__(self, store):
        self.store = store

    def begin(self, ids: list[int]) -> None:
        """Record ``ids`` (the batch, and confirmed deliveries not yet saved) before sending."""
        self.store.set_status(INFLIGHT, {"ids": ids, "pid": os.getpid(), "at": clk.to_iso(clk.utcnow())})

    def end(self) -> None:
        """Every answer of the batch is in (and its deliveries saved): nothing is in flight."""
        self.store.set_status(INFLIGHT, {"ids": []})

    def recorded(self) -> list[int]:
        """Ids a sender recorded and never cleared (it died mid-batch)."""
        record = self.store.status_value(INFLIGHT) or {}
        ids = record.get("ids") or []
        return [int(i) for i in ids if isinstance(i, int) and not isinstance(i, bool)]
