"""The outbox in the store: entries waiting for TimeTrack, delivered and rejected ones.

Delivery reads a page at a time (:meth:`OutboxRecords.queued`), by key, so its
cost per step is the same with ten entries queued or a hundred thousand, and
the store lock is never held for longer than one short transaction.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from kiosk import clock
from kiosk.model import DeliveredEntry, OutboxEntry, RejectedEntry, to_iso
from kiosk.store.db import PAGE, Database, key

PRUNE_BATCH = 500


class OutboxRecords(Database):
    """Queued (sendable), held, delivered and rejected entries."""

    # ------------------------------------------------------------ reading

    def queued(self, after: int = 0, limit: int = PAGE) -> list[OutboxEntry]:
        """Sendable entries with an id above ``after``, oldest first, at most ``limit``.

            >>> page = store.queued()                      # doctest: +SKIP
            >>> more = store.queued(after=page[-1].id)     # doctest: +SKIP
        """
        return self._entries("outbox", after, limit)

    def held(self, after: int = 0, limit: int = PAGE) -> list[OutboxEntry]:
        """Entries waiting for a trusted clock, oldest first."""
        return self._entries("held", after, limit)

    def _entries(self, prefix: str, after: int, limit: int) -> list[OutboxEntry]:
        """The next page of readable entries; pages of damaged records alone are read past."""
        cursor = key(prefix, after)
        while True:
            rows = self._page(prefix, after=cursor, limit=limit)
            entries = list(self._typed(OutboxEntry, rows))
            if entries or rows.raw_count < limit:
                return entries
            cursor = rows.last_key

    def iter_outbox(self) -> Iterator[OutboxEntry]:
        """Every queued and held entry in id order, read a page at a time (constant memory)."""
        streams = [self._typed(OutboxEntry, self._walk(prefix)) for prefix in ("outbox", "held")]
        return heapq.merge(*streams, key=lambda e: e.id)

    def outbox(self, limit: int | None = None) -> list[OutboxEntry]:
        """Queued and held entries, oldest first (all of them, or the first ``limit``)."""
        out = []
        for entry in self.iter_outbox():
            if limit is not None and len(out) >= limit:
                break
            out.append(entry)
        return out

    def outbox_entry(self, entry_id: int) -> OutboxEntry | None:
        """A queued or held entry by id."""
        for prefix in ("outbox", "held"):
            rec = self._get(key(prefix, entry_id))
            if rec is not None:
                return OutboxEntry.parse(rec, key(prefix, entry_id))
        return None

    def outbox_count(self) -> int:
        """Queued and held entries."""
        return self._count("outbox") + self._count("held")

    def held_count(self) -> int:
        return self._count("held")

    def oldest_queued(self) -> OutboxEntry | None:
        """The entry that has waited longest (queued or held)."""
        firsts = [e for p in ("outbox", "held") for e in self._typed(OutboxEntry, self._page(p, limit=1))]
        return min(firsts, key=lambda e: e.id, default=None)

    # ------------------------------------------------------------ delivery bookkeeping

    def update_entry(self, entry_id: int, *, failed: bool = False, **changes: Any) -> OutboxEntry | None:
        """Change attempt bookkeeping of a queued entry; None if it left the queue meanwhile.

        ``failed`` counts a failed delivery attempt (the ``failed`` metric) in the same transaction.
        """
        with self.transaction() as db:
            k = key("outbox", entry_id)
            rec = db.get(k)
            if rec is None:
                return None
            entry = OutboxEntry.from_record(rec).replace(**changes)
            db[k] = entry.to_record()
            if failed:
                self._bump(db, "deliveries:failed")
            return entry

    def mark_delivered(self, entry_id: int, server_id: Any = None) -> bool:
        """Move a confirmed entry out of the queue, keeping the server's id."""
        return self.mark_delivered_many([(entry_id, server_id)]) == 1

    def mark_delivered_many(self, marks: list[tuple[int, Any]], *, status: dict[str, Any] | None = None) -> int:
        """Move a batch of confirmed entries out of the queue in one transaction (one fsync).

        ``status``: status records (name -> value) written in the same transaction, e.g. the
        sender's in-flight record for its next batch. Returns how many entries were still queued and moved.
        """
        now = clock.utcnow()
        server_ids = {key("outbox", entry_id): server_id for entry_id, server_id in marks}
        with self.transaction() as db:
            for name, value in (status or {}).items():
                db[key("status", name)] = value
            found = self._get_many(list(server_ids)) if server_ids else {}  # one query, not one per entry
            if not found:
                return 0
            # The stored form of DeliveredEntry: the queued record plus the server's id and when
            # (built on the dicts: this runs for every entry of a drain).
            at = to_iso(now)
            db.update({key("delivered", rec["id"]): {**rec, "server_id": server_ids[k], "delivered_at": at}
                       for k, rec in found.items()})
            self._delete_many(list(found))
            last = next(reversed(found))
            db["status:last_delivery"] = {"at": at, "id": found[last]["id"], "server_id": server_ids[last]}
            self._bump(db, "deliveries:delivered", len(found))
        return len(found)

    def reject(self, entry_id: int, status: int | None, reason: str) -> bool:
        """Move a permanently refused entry to the rejected list, for an administrator."""
        with self.transaction() as db:
            rec = db.get(key("outbox", entry_id))
            if rec is None:
                return False
            rejected = RejectedEntry.from_record(rec).replace(status=status, reason=reason,
                                                              rejected_at=clock.utcnow())
            db[key("rejected", entry_id)] = rejected.to_record()
            del db[key("outbox", entry_id)]
            self._audit(db, "rejected", entry=entry_id, username=rejected.username, status=status, reason=reason)
            self._bump(db, "deliveries:rejected")
        return True

    # ------------------------------------------------------------ rejected, dropped, delivered

    def rejected(self) -> list[RejectedEntry]:
        return list(self._typed(RejectedEntry, self._walk("rejected")))

    def rejected_entry(self, entry_id: int) -> RejectedEntry | None:
        rec = self._get(key("rejected", entry_id))
        return None if rec is None else RejectedEntry.parse(rec, key("rejected", entry_id))

    def rejected_count(self) -> int:
        return self._count("rejected")

    def retry_rejected(self, entry_id: int) -> bool:
        """Put a rejected entry back in the queue with a fresh attempt count."""
        with self.transaction() as db:
            rec = db.get(key("rejected", entry_id))
            if rec is None:
                return False
            entry = OutboxEntry.from_record({k: v for k, v in rec.items()
                                             if k not in ("status", "reason", "rejected_at")})
            entry = entry.replace(attempts=0, last_error=None, last_attempt=None, next_attempt=None,
                                  ambiguous=False, ambiguous_at=None)
            db[key("outbox", entry_id)] = entry.to_record()
            del db[key("rejected", entry_id)]
            self._audit(db, "retry", entry=entry_id, username=entry.username)
        return True

    def drop(self, entry_id: int, *, reason: str = "") -> dict | None:
        """Delete a queued, held or rejected entry for good, keeping a copy in the audit log."""
        with self.transaction() as db:
            for prefix in ("outbox", "held", "rejected"):
                rec = db.get(key(prefix, entry_id))
                if rec is not None:
                    del db[key(prefix, entry_id)]
                    self._audit(db, "drop", entry=entry_id, was=prefix, reason=reason,
                                username=rec.get("username"), copy=rec)
                    return rec
        return None

    def delivered(self, limit: int | None = None) -> list[DeliveredEntry]:
        """Delivered entries, newest first."""
        return list(self._typed(DeliveredEntry, self._page("delivered", reverse=True, limit=limit)))

    def prune(self, before: datetime) -> int:
        """Delete audit lines and delivered entries older than ``before`` (the history limit).

        Queued, held, rejected and flagged entries and open clock-ins are never
        pruned: they still need someone. Returns how many records went.
        """
        cutoff = to_iso(before)
        removed = 0
        for prefix, stamp in (("audit", "at"), ("delivered", "delivered_at")):
            while True:  # oldest first, a batch at a time: ids grow with time
                batch = self._page(prefix, limit=PRUNE_BATCH)
                old = [k for k, rec in batch if isinstance(rec, dict) and str(rec.get(stamp) or "") < cutoff]
                if old:
                    with self.transaction():
                        self._delete_many(old)
                    removed += len(old)
                if len(old) < PRUNE_BATCH:
                    break
        return removed
