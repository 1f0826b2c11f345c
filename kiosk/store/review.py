"""What needs a person: open clock-ins, flagged records, rejected entries, and the audit log.

Every change is one transaction with its audit line. Times an administrator
gives must make sense (:func:`check_span`): an end after the start (at least the
API's millisecond) and not in the future; an entry is never queued with an
untrusted time.

The audit log can hold a year of history: :meth:`ReviewRecords.audit_lines`
filters in SQLite (``json_extract``) and reads a page at a time, newest first,
so a query for the last few lines never reads the whole log. Audit ids grow
with time, which lets ``since`` start near the right place (binary search on
the ids, with a day's margin for wall-clock steps) instead of at the beginning.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from kiosk import clock
from kiosk.exc import Conflict, InvalidTime, NotFound
from kiosk.model import (AuditLine, FlaggedRecord, OpenClockIn, OutboxEntry, RejectedEntry, from_iso, to_iso)
from kiosk.rules import MIN_ENTRY_SECONDS
from kiosk.store.admin import Changes, name
from kiosk.store.db import PAGE, TABLE, decode, key

SINCE_MARGIN = timedelta(days=1)  # wall-clock steps: start the id search this much earlier


def check_span(start: datetime, end: datetime, *, now: datetime | None = None, what: str = "the end") -> None:
    """:class:`~kiosk.exc.InvalidTime` unless ``start < end <= now`` (at the API's millisecond precision)."""
    now = now or clock.utcnow()
    if end > now:
        raise InvalidTime(f"{what} {_shown(end)} is in the future (now: {_shown(now)})")
    if (end - start).total_seconds() < MIN_ENTRY_SECONDS:
        raise InvalidTime(f"{what} {_shown(end)} is not after the start {_shown(start)}")


def _shown(dt: datetime) -> str:
    return dt.astimezone().isoformat(timespec="seconds")


class ReviewRecords(Changes):
    """Open clock-ins, flagged records, rejected entries and audit queries."""

    # ------------------------------------------------------------ open clock-ins

    def close_open(self, username: str, end: datetime, *, notes: str = "", kiosk: str = "",
                   expect_since: datetime | None = None) -> OutboxEntry:
        """Close ``username``'s open clock-in at ``end`` (a forgotten clock-out) and queue the entry.

        :class:`~kiosk.exc.Conflict` if the clock-in changed since ``expect_since``
        was read (the person tapped meanwhile), or its time is not trusted yet.
        """
        with self._change() as db:
            rec = db.get(key("open", username))
            if rec is None:
                raise NotFound(f"{name(username)} has no open clock-in (kiosk open list shows who has)")
            opened = OpenClockIn.from_record(rec)
            if expect_since is not None and opened.since != expect_since:
                raise Conflict(f"the open clock-in of {name(username)} changed meanwhile (a tap?): look again")
            if not opened.synced:
                raise Conflict(f"the clock-in of {name(username)} was stamped before the clock was trusted; its time is "
                               "corrected once the clock syncs: close it then, or cancel it")
            check_span(opened.since, end)
            entry = OutboxEntry(id=self._next_id(db), username=username, uid=opened.uid, start=opened.since,
                                end=end, notes=notes, kiosk=kiosk, queued_at=clock.utcnow(),
                                notes_log=[f"clock-out entered by {self.actor or 'an administrator'}"])
            db[key("outbox", entry.id)] = entry.to_record()
            del db[key("open", username)]
            self._audit(db, "open_close", username=username, uid=opened.uid, entry=entry.id,
                        since=to_iso(opened.since), to=to_iso(end))
        return entry

    def cancel_open(self, username: str) -> OpenClockIn:
        """Delete ``username``'s open clock-in without an entry (a copy stays in the audit log)."""
        with self._change() as db:
            rec = db.get(key("open", username))
            if rec is None:
                raise NotFound(f"{name(username)} has no open clock-in (kiosk open list shows who has)")
            del db[key("open", username)]
            self._audit(db, "open_cancel", username=username, uid=rec.get("uid"), copy=rec)
        return OpenClockIn.from_record(rec)

    # ------------------------------------------------------------ flagged

    def iter_flagged(self) -> Iterator[FlaggedRecord]:
        """Flagged records, oldest first, a page at a time."""
        return self._typed(FlaggedRecord, self._walk("flagged"))

    def flagged_entry(self, flag_id: int) -> FlaggedRecord | None:
        rec = self._get(key("flagged", flag_id))
        return None if rec is None else FlaggedRecord.parse(rec, key("flagged", flag_id))

    @staticmethod
    def flagged_times(flag: FlaggedRecord) -> tuple[datetime | None, datetime | None]:
        """The trusted start and end of a flagged record (None where unknown or untrusted)."""
        rec = flag.record
        if flag.was == "open":
            trusted = not rec.get("unsynced")
            return (from_iso(rec["since"]) if trusted and rec.get("since") else None), None
        start = from_iso(rec["from"]) if rec.get("from") and not rec.get("from_unsynced") else None
        end = from_iso(rec["to"]) if rec.get("to") and not rec.get("to_unsynced") else None
        return start, end

    def resolve_flagged(self, flag_id: int, *, end: datetime, start: datetime | None = None,
                        notes: str = "", kiosk: str = "") -> OutboxEntry:
        """Queue flagged record ``flag_id`` as an entry ending at ``end`` (and starting at ``start``,
        required when the recorded start is not trusted); the queued entry keeps the flag's id."""
        with self._change() as db:
            rec = db.get(key("flagged", flag_id))
            if rec is None:
                raise NotFound(f"no flagged record {flag_id} (kiosk flagged list shows them)")
            flag = FlaggedRecord.from_record(rec)
            known_start, _ = self.flagged_times(flag)
            begin = start or known_start
            if begin is None:
                raise InvalidTime(f"the start of flagged record {flag_id} is not known (the clock was not "
                                  "trusted): give it with --from")
            check_span(begin, end)
            inner = flag.record
            entry = OutboxEntry(id=flag_id, username=flag.username, uid=str(inner.get("uid", "")), start=begin,
                                end=end, notes=notes or str(inner.get("notes", "")),
                                kiosk=kiosk or str(inner.get("kiosk", "")), queued_at=clock.utcnow(),
                                notes_log=[*inner.get("notes_log", []),
                                           f"flagged ({flag.reason}); times set by {self.actor or 'an administrator'}"])
            db[key("outbox", flag_id)] = entry.to_record()
            del db[key("flagged", flag_id)]
            self._audit(db, "flag_resolve", flagged=flag_id, username=flag.username, uid=entry.uid, entry=flag_id,
                        was=flag.was, **{"from": to_iso(begin), "to": to_iso(end)})
        return entry

    def discard_flagged(self, flag_id: int, *, reason: str = "") -> FlaggedRecord:
        """Delete flagged record ``flag_id`` for good (a copy stays in the audit log)."""
        with self._change() as db:
            rec = db.get(key("flagged", flag_id))
            if rec is None:
                raise NotFound(f"no flagged record {flag_id} (kiosk flagged list shows them)")
            flag = FlaggedRecord.from_record(rec)
            del db[key("flagged", flag_id)]
            self._audit(db, "flag_discard", flagged=flag_id, username=flag.username, uid=flag.record.get("uid"),
                        reason=reason, copy=rec)
        return flag

    # ------------------------------------------------------------ rejected entries

    def iter_outbox_records(self) -> Iterator[dict]:
        """Queued and held entries as stored (JSON-ready, the form ``to_record()`` gives), in id order, a page
        at a time: listings of a week-long outage print them without building a typed record each."""
        streams = [(v for k, v in self._walk(prefix) if OutboxEntry.readable(v, k)) for prefix in ("outbox", "held")]
        return heapq.merge(*streams, key=lambda rec: rec["id"])

    def iter_rejected_records(self) -> Iterator[dict]:
        """Rejected entries as stored, in id order, a page at a time."""
        return (v for k, v in self._walk("rejected") if RejectedEntry.readable(v, k))

    def iter_rejected(self) -> Iterator[RejectedEntry]:
        """Rejected entries, oldest first, a page at a time."""
        return self._typed(RejectedEntry, self._walk("rejected"))

    def edit_rejected(self, entry_id: int, *, username: str | None = None, start: datetime | None = None,
                      end: datetime | None = None) -> tuple[RejectedEntry, RejectedEntry]:
        """Correct a rejected entry before ``retry``; (before, after). It stays rejected until retried."""
        with self._change() as db:
            rec = db.get(key("rejected", entry_id))
            if rec is None:
                where = "is queued, not rejected" if db.get(key("outbox", entry_id)) else "does not exist"
                raise NotFound(f"entry {entry_id} {where} (kiosk queue list --rejected shows the rejected ones)")
            old = RejectedEntry.from_record(rec)
            new = old.replace(username=username or old.username, start=start or old.start, end=end or old.end)
            if new.start != old.start or new.end != old.end:
                check_span(new.start, new.end)
            changes = {name: [str(a), str(b)] for name, a, b in (
                ("username", old.username, new.username), ("from", to_iso(old.start), to_iso(new.start)),
                ("to", to_iso(old.end), to_iso(new.end))) if a != b}
            if not changes:
                return old, old
            new = new.replace(notes_log=[*old.notes_log, f"edited by {self.actor or 'an administrator'}: "
                                         + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items())])
            db[key("rejected", entry_id)] = new.to_record()
            self._audit(db, "rejected_edit", entry=entry_id, uid=old.uid, username=new.username,
                        old_username=old.username, changes=changes)
        return old, new

    def rejected_of_badge(self, uid: str, username: str | None = None) -> list[RejectedEntry]:
        """Rejected entries made by badge ``uid`` (and sent as ``username``, if given)."""
        return [e for e in self.iter_rejected() if e.uid == uid and (username is None or e.username == username)]

    # ------------------------------------------------------------ audit log

    def audit_lines(self, *, user: str | None = None, badge: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, kinds: tuple[str, ...] = (),
                    limit: int | None = 100, newest_first: bool = True) -> Iterator[AuditLine]:
        """Audit lines matching every filter given, newest first (or oldest first), at most ``limit`` (None: all).

        ``user`` matches the line's username (or the one it had before a change),
        ``badge`` its canonical uid. Reads a page at a time: constant memory, and
        the newest lines come first whatever the size of the log.

            >>> [line.kind for line in store.audit_lines(user="anna", limit=2)]   # doctest: +SKIP
            ['clock_out', 'clock_in']
        """
        where, args = [], []
        if user is not None:
            where.append("(json_extract(value, '$.username') = ? OR json_extract(value, '$.old_username') = ?)")
            args += [user, user]
        if badge is not None:
            where.append("json_extract(value, '$.uid') = ?")
            args.append(badge)
        if since is not None:
            where.append("json_extract(value, '$.at') >= ?")
            args.append(to_iso(since))
        if until is not None:
            where.append("json_extract(value, '$.at') <= ?")
            args.append(to_iso(until))
        if kinds:
            where.append(f"json_extract(value, '$.kind') IN ({','.join('?' * len(kinds))})")
            args += list(kinds)
        low = self._audit_key_at(since - SINCE_MARGIN) if since is not None else "audit:"
        high = "audit;"
        sent = 0
        page = PAGE * 4
        order = "DESC" if newest_first else "ASC"
        sql = (f'SELECT key, value FROM "{TABLE}" WHERE key > ? AND key < ?'
               + "".join(f" AND {w}" for w in where) + f" ORDER BY key {order} LIMIT ?")
        while limit is None or sent < limit:
            want = page if limit is None else min(page, limit - sent)
            with self._lock:
                rows = list(self._open().conn.select(sql, (low, high, *args, want)))
            for k, raw in rows:
                line = AuditLine.parse(decode(k, raw), k)
                if line is not None:
                    yield line
            sent += len(rows)
            if len(rows) < want:
                return
            if newest_first:
                high = rows[-1][0]
            else:
                low = rows[-1][0]

    def _audit_key_at(self, at: datetime) -> str:
        """A key just before the first audit line stamped at or after ``at`` (ids grow with time): binary search."""
        stamp = to_iso(at)
        with self._lock:
            conn = self._open().conn
            first = conn.select_one(f'SELECT key FROM "{TABLE}" WHERE key >= ? AND key < ? ORDER BY key LIMIT 1',
                                    ("audit:", "audit;"))
            last = conn.select_one(f'SELECT key FROM "{TABLE}" WHERE key >= ? AND key < ? ORDER BY key DESC LIMIT 1',
                                   ("audit:", "audit;"))
        if not first:
            return "audit:"
        lo, hi = int(first[0].split(":")[1]), int(last[0].split(":")[1]) + 1
        while lo < hi:  # first id whose next line is stamped at or after `at`
            mid = (lo + hi) // 2
            with self._lock:
                row = self._open().conn.select_one(
                    f'SELECT json_extract(value, \'$.at\') FROM "{TABLE}" WHERE key >= ? AND key < ? '
                    "ORDER BY key LIMIT 1", (key("audit", mid), "audit;"))
            if row is None or (row[0] or "") >= stamp:
                hi = mid
            else:
                lo = mid + 1
        return key("audit", lo - 1)

    def audit_count(self) -> int:
        return self._count("audit")

    def describe_store(self) -> dict[str, Any]:
        """Counts of every kind of record (backups and restores show them)."""
        return {"badges": self._count("badge"), "open": self._count("open"), "queued": self._count("outbox"),
                "held": self._count("held"), "rejected": self._count("rejected"),
                "flagged": self._count("flagged"), "delivered": self._count("delivered"),
                "audit": self._count("audit")}
