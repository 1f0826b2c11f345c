"""Badges and taps in the store: the mappings, open clock-ins, and applying a tap's outcome.

A tap is one transaction: the state change (open or close a clock-in, queue
the entry), its audit line and its counter. Entries whose times were stamped
by an untrusted clock go under ``held:`` until :meth:`TapRecords.correct_held`
fixes them (a batch per call, so that a week of them never stalls a tap).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlitedict import SqliteDict

from kiosk import clock
from kiosk.exc import Conflict, StoreError
from kiosk.model import Badge, FlaggedRecord, OpenClockIn, OutboxEntry, Stamp, from_iso, to_iso
from kiosk.rules import MIN_ENTRY_SECONDS, TapKind, TapOutcome
from kiosk.store.db import PAGE, Database, key

Correct = Callable[[dict], datetime | None]  # {"boottime", "boot"} -> true time, or None if unknowable


class TapRecords(Database):
    """Badge mappings, open clock-ins and the tap transaction."""

    # ------------------------------------------------------------ badges

    def add_badge(self, uid: str, username: str, *, label: str = "", enabled: bool = True,
                  replace: bool = False) -> Badge:
        """Map badge ``uid`` (canonical) to ``username``; :class:`~kiosk.exc.Conflict` if it is mapped
        already, unless ``replace``. The caller validates the username (:func:`kiosk.text.clean_name`)."""
        now = clock.utcnow()
        badge = Badge(uid, username, enabled, label, added_at=now, updated_at=now)
        with self.transaction() as db:
            existing = db.get(key("badge", uid))
            if existing and not replace:
                raise Conflict(f"badge {uid} is already mapped to {existing['username']}")
            db[key("badge", uid)] = badge.to_record()
            self._audit(db, "badge_add", uid=uid, username=username, replaced=existing)
        return badge

    def badge(self, uid: str) -> Badge | None:
        """The mapping of canonical badge id ``uid``, or None."""
        rec = self._get(key("badge", uid))
        return None if rec is None else Badge.parse(rec, key("badge", uid))

    def badges(self) -> list[Badge]:
        """Every mapping, in badge id order."""
        return list(self._typed(Badge, self._walk("badge")))

    # ------------------------------------------------------------ open clock-ins

    def open_clock_in(self, username: str) -> OpenClockIn | None:
        rec = self._get(key("open", username))
        return None if rec is None else OpenClockIn.parse(rec, key("open", username))

    def open_count(self) -> int:
        return self._count("open")

    def open_clock_ins(self) -> list[OpenClockIn]:
        """Everyone clocked in now (one per person: bounded by the staff, not by time)."""
        return list(self._typed(OpenClockIn, self._walk("open")))

    # ------------------------------------------------------------ the tap

    def record(self, outcome: TapOutcome, stamp: Stamp | None = None, *, notes: str = "",
               kiosk: str = "") -> int | None:
        """Apply a tap's outcome atomically: the state change, its audit line, its counter.

        Returns the id of the queued entry (clock-out), else None. Raises
        :class:`~kiosk.exc.StoreGone` when the file was deleted or replaced (the
        tap must not be acknowledged), :class:`~kiosk.exc.StoreError` when the
        write fails or the open clock-in changed since the decision.

            >>> entry_id = store.record(outcome, stamp, notes="kiosk: entrance")  # doctest: +SKIP
        """
        self.check_identity()
        stamp = stamp or Stamp(outcome.at, True, None, "")
        with self.transaction() as db:
            entry_id = None
            counted = str(outcome.kind)
            if outcome.kind is TapKind.CLOCK_IN:
                if outcome.stale is not None:
                    opened = self._expect_open(db, outcome.stale.username, outcome.stale.since)
                    self._flag(db, key("open", outcome.stale.username), opened,
                               outcome.message or "stale clock-in")
                    counted = "stale"
                db[key("open", outcome.username)] = OpenClockIn(
                    outcome.username, outcome.at, outcome.uid, synced=stamp.synced,
                    boottime=stamp.boottime, boot=stamp.boot).to_record()
            elif outcome.kind is TapKind.CLOCK_OUT:
                entry_id = self._clock_out(db, outcome, stamp, notes, kiosk)
            fields: dict[str, Any] = {"tap_at": to_iso(outcome.at), "uid": outcome.uid,
                                      "username": outcome.username, "entry": entry_id}
            if not stamp.synced:
                fields.update(unsynced=True, boottime=stamp.boottime, boot=stamp.boot)
            if outcome.note:
                fields["note"] = outcome.note
            if outcome.kind is TapKind.INVALID and outcome.message:
                fields["reason"] = outcome.message[:200]
            self._audit(db, str(outcome.kind), **fields)
            self._bump(db, f"taps:{counted}")
        return entry_id

    def _expect_open(self, db: SqliteDict, username: str, since: datetime | None) -> dict:
        opened = db.get(key("open", username))
        if opened is None or from_iso(opened["since"]) != since:
            raise StoreError(f"open clock-in of {username} changed under the tap")
        return opened

    def _clock_out(self, db: SqliteDict, outcome: TapOutcome, stamp: Stamp, notes: str, kiosk: str) -> int:
        opened = OpenClockIn.from_record(self._expect_open(db, outcome.username or "", outcome.since))
        start = outcome.start or opened.since
        derived = bool(outcome.note)  # the start follows from a trusted end and the boottime length
        start_unsynced = None if derived or opened.synced else {"boottime": opened.boottime, "boot": opened.boot}
        end_unsynced = None if stamp.synced else {"boottime": stamp.boottime, "boot": stamp.boot}
        if (outcome.at - start).total_seconds() < MIN_ENTRY_SECONDS and not (start_unsynced or end_unsynced):
            # (with an untrusted end, correct_held decides once the clock is trusted)
            raise StoreError("refusing an entry whose end is not after its start")
        entry_id = self._next_id(db)
        entry = OutboxEntry(
            id=entry_id, username=opened.username, uid=outcome.uid, start=start, end=outcome.at, notes=notes,
            kiosk=kiosk, queued_at=clock.utcnow(), start_unsynced=start_unsynced, end_unsynced=end_unsynced,
            notes_log=[outcome.note] if outcome.note else [],
        )
        db[key("held" if entry.held else "outbox", entry_id)] = entry.to_record()
        del db[key("open", opened.username)]
        return entry_id

    def _flag(self, db: SqliteDict, k: str, record: dict, reason: str) -> int:
        """Move an open clock-in or an entry to the review list, inside the current transaction."""
        was = k.split(":")[0]
        ident = int(record["id"]) if was in ("outbox", "held") else self._next_id(db)
        flagged = FlaggedRecord(ident, "outbox" if was == "held" else was, reason, clock.utcnow(), record)
        db[key("flagged", ident)] = flagged.to_record()
        del db[k]
        self._audit(db, "flagged", flagged=ident, was=flagged.was, username=record.get("username"), reason=reason)
        return ident

    # ------------------------------------------------------------ clock correction

    def correct_open(self, correct: Correct) -> dict[str, int]:
        """Give open clock-ins stamped before the clock was trusted their true time (or flag them)."""
        fixed = flagged = 0
        with self.transaction() as db:
            for k, rec in self._page("open", limit=None):  # one per person
                opened = OpenClockIn.parse(rec, k)
                if opened is None or opened.synced:
                    continue
                true = correct({"boottime": opened.boottime, "boot": opened.boot})
                if true is None:
                    self._flag(db, k, rec, "clock was not synchronised at clock-in; true time unknown")
                    flagged += 1
                    continue
                db[k] = opened.replace(since=true, synced=True, clock_corrected=True).to_record()
                fixed += 1
        return {"fixed": fixed, "flagged": flagged}

    def correct_held(self, correct: Correct, max_session_seconds: float | None = None, *,
                     limit: int = PAGE, note: str = "") -> dict[str, int]:
        """Correct (or flag) up to ``limit`` held entries in one transaction; ``left`` says how many remain.

        ``correct(info)`` gives the true time of an untrusted stamp, or None when
        it cannot be known (the kiosk rebooted before the clock was trusted): such
        an entry is flagged for review, as is one that turns out longer than
        ``max_session_seconds`` (a forgotten clock-out). ``note`` (what the correction
        did, e.g. "times corrected by +3600.2s from TimeTrack's Date header") goes to
        each corrected entry's ``notes_log``.
        """
        fixed = flagged = 0
        with self.transaction() as db:
            for k, rec in self._page("held", limit=limit):
                entry = OutboxEntry.parse(rec, k)
                if entry is None:
                    continue
                reason, times = None, {}
                for end, info in (("start", entry.start_unsynced), ("end", entry.end_unsynced)):
                    if info:
                        true = correct(info)
                        if true is None:
                            reason = "clock was not synchronised at the tap; true times unknown"
                            break
                        times[end] = true
                if reason is None:
                    new = entry.replace(**times, start_unsynced=None, end_unsynced=None, clock_corrected=True,
                                        notes_log=[*entry.notes_log, note] if note else entry.notes_log)
                    length = new.duration.total_seconds()
                    if length < MIN_ENTRY_SECONDS:
                        reason = "corrected times end before they start"
                    elif max_session_seconds is not None and length > max_session_seconds:
                        reason = (f"{length / 3600:.1f}h once the clock was corrected, longer than "
                                  "max_session_hours: probably a forgotten clock-out; check this person's day")
                if reason:
                    self._flag(db, k, rec, reason)
                    flagged += 1
                else:
                    db[key("outbox", entry.id)] = new.to_record()
                    self._delete_many([k])
                    fixed += 1
        return {"fixed": fixed, "flagged": flagged, "left": self._count("held")}

    def fix_unsynced(self, correct: Correct, max_session_seconds: float | None = None) -> dict[str, int]:
        """Correct every untrusted stamp now (open clock-ins and all held entries, batch by batch)."""
        result = self.correct_open(correct)
        while True:
            batch = self.correct_held(correct, max_session_seconds)
            result["fixed"] += batch["fixed"]
            result["flagged"] += batch["flagged"]
            if not batch["left"] or not (batch["fixed"] or batch["flagged"]):
                return result
