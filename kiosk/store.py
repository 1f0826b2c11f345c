"""The local store: the only module that touches SQLite (through sqlitedict).

Why it looks like this:

- One sqlitedict table (``kiosk``) holds every record under a key prefix
  (``badge:``, ``open:``, ``outbox:``, ``rejected:``, ``delivered:``,
  ``flagged:``, ``audit:``, ``status:``, ``meta:``). sqlitedict gives each table
  its own connection, so there is no transaction across tables; one table makes
  every state change (a clock-out deletes the open clock-in, queues the entry
  and writes the audit line) a single SQLite transaction: atomic by construction,
  nothing to repair after a crash.
- Each transaction starts with ``BEGIN IMMEDIATE`` so read-modify-write is
  atomic across processes too (the daemon and ``kiosk`` CLI commands).
- JSON codec, never pickle: whoever can write the file must not run code in the daemon.
- WAL in every process (mixed journal modes lock each other out), and
  ``synchronous=FULL`` because sqlitedict turns fsync off: a tap is on disk before
  the feedback says "done".
- Keys under a prefix are read with an indexed range query, so the growing audit
  and delivered history never slow down the outbox.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlitedict import SqliteDict

from kiosk import clock
from kiosk.exc import Conflict, StoreCorrupt, StoreError, StoreMissing, StoreTooNew
from kiosk.rules import MIN_ENTRY_SECONDS, Badge, TapKind, OpenClockIn, TapOutcome

SCHEMA_VERSION = 1
TABLE = "kiosk"
PRUNE_BATCH = 500
log = logging.getLogger("kiosk.store")


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite before sqlitedict's thread trips over it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read store {path}: {exc.strerror}") from None
    if head and head != b"SQLite format 3\x00":
        raise StoreCorrupt(f"{path} is not a SQLite database (damaged or not a kiosk store)")


def _key(prefix: str, ident: int | str) -> str:
    return f"{prefix}:{ident:012d}" if isinstance(ident, int) else f"{prefix}:{ident}"


class Store:
    """Typed access to the kiosk's records. Thread-safe; safe beside other processes."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            if not create:
                raise StoreMissing(f"state directory {self.path.parent} does not exist")
            try:
                self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create state directory {self.path.parent}: {exc.strerror}") from None
        if not create and not self.path.exists():
            raise StoreMissing(f"no kiosk store at {self.path} (has the daemon run yet?)")
        _check_header(self.path)
        self._lock = threading.RLock()
        try:
            self._db = SqliteDict(
                str(self.path), tablename=TABLE, autocommit=False, journal_mode="WAL",
                encode=json.dumps, decode=json.loads, outer_stack=False,
            )
            self._db.conn.select_one("PRAGMA synchronous=FULL")
        except Exception as exc:  # sqlite3 errors arrive wrapped in many shapes
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._check_schema()
        self._match_owner()

    def _match_owner(self) -> None:
        """Run as root on the daemon's store, give the files SQLite just made (-wal, -shm) back
        to the store's owner: root-owned WAL files would lock the daemon out."""
        if os.geteuid() != 0:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            return
        if st.st_uid == 0:
            return
        for suffix in ("-wal", "-shm"):
            name = f"{self.path}{suffix}"
            try:
                if stat.S_ISREG(os.lstat(name).st_mode):  # never follow a link planted in the state dir
                    os.chown(name, st.st_uid, st.st_gid, follow_symlinks=False)
            except OSError:
                pass  # not there (yet), or not ours to change

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close(force=True)
                self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[SqliteDict]:
        """One atomic, durable write: BEGIN IMMEDIATE ... COMMIT (fsync), or ROLLBACK."""
        with self._lock:
            db = self._open()
            db.conn.select_one("BEGIN IMMEDIATE")
            try:
                yield db
                # sqlitedict queues writes without waiting for them: a round trip here surfaces
                # any write that failed, so it is rolled back rather than half committed.
                db.conn.select_one("SELECT 1")
                # Not db.commit(): sqlitedict's worker thread dies when a COMMIT fails (disk
                # full) and the caller would wait forever. A COMMIT statement reports its error.
                db.conn.select_one("COMMIT")
            except BaseException as exc:
                try:
                    db.conn.select_one("ROLLBACK")
                except Exception:
                    pass  # no transaction left to roll back (the COMMIT failed before starting)
                if isinstance(exc, Exception) and not isinstance(exc, StoreError):
                    raise StoreError(f"store write failed: {exc}") from exc
                raise

    # Reads take the lock too: all threads share sqlitedict's one connection, so a read
    # between another thread's BEGIN and COMMIT would see rows that may never be committed.

    def _range(self, prefix: str, *, reverse: bool = False, limit: int | None = None) -> list[tuple[str, Any]]:
        """(key, value) pairs under ``prefix:``, in key order, via the primary key index."""
        order = "DESC" if reverse else "ASC"
        sql = f'SELECT key, value FROM "{TABLE}" WHERE key >= ? AND key < ? ORDER BY key {order}'
        args: tuple = (prefix + ":", prefix + ";")  # ';' sorts right after ':'
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        with self._lock:
            return [(key, json.loads(value)) for key, value in self._open().conn.select(sql, args)]

    def _count(self, prefix: str) -> int:
        with self._lock:
            row = self._open().conn.select_one(
                f'SELECT COUNT(*) FROM "{TABLE}" WHERE key >= ? AND key < ?', (prefix + ":", prefix + ";")
            )
        return row[0]

    def _open(self) -> SqliteDict:
        if self._db is None:
            raise StoreError("store is closed")
        return self._db

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        """The records stored under ``keys`` (missing ones left out), in key order."""
        found: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[i:i + 500]
                sql = f'SELECT key, value FROM "{TABLE}" WHERE key IN ({",".join("?" * len(chunk))}) ORDER BY key'
                for key, value in self._open().conn.select(sql, tuple(chunk)):
                    found[key] = json.loads(value)
        return found

    def _delete_many(self, keys: list[str]) -> None:
        """Delete ``keys`` inside the current transaction (sqlitedict's del checks each key first)."""
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            self._db.conn.execute(f'DELETE FROM "{TABLE}" WHERE key IN ({",".join("?" * len(chunk))})', tuple(chunk))

    def _get(self, key: str, default=None):
        with self._lock:
            return self._open().get(key, default)

    def _next_id(self, db: SqliteDict) -> int:
        """Next id from one counter shared by all records; call inside a transaction."""
        n = db.get("meta:seq", 0) + 1
        db["meta:seq"] = n
        return n

    def _check_schema(self) -> None:
        version = self._get("meta:schema")
        if version is None:
            with self.transaction() as db:
                if db.get("meta:schema") is None:
                    db["meta:schema"] = SCHEMA_VERSION
            return
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            self.close()
            raise StoreTooNew(
                f"store {self.path} has schema version {version}, newer than this kiosk "
                f"understands ({SCHEMA_VERSION}); upgrade kiosk"
            )

    def integrity_check(self) -> str:
        with self._lock:
            return self._open().conn.select_one("PRAGMA integrity_check")[0]

    def _audit(self, db: SqliteDict, kind: str, **fields: Any) -> int:
        ident = self._next_id(db)
        db[_key("audit", ident)] = {"id": ident, "at": clock.to_iso(clock.utcnow()), "kind": kind, **fields}
        return ident

    # ------------------------------------------------------------ badges

    def add_badge(self, uid: str, username: str, *, label: str = "", enabled: bool = True,
                  replace: bool = False) -> dict:
        record = {"uid": uid, "username": username, "enabled": enabled, "label": label,
                  "added_at": clock.to_iso(clock.utcnow())}
        with self.transaction() as db:
            existing = db.get(_key("badge", uid))
            if existing and not replace:
                raise Conflict(f"badge {uid} is already mapped to {existing['username']}")
            db[_key("badge", uid)] = record
            self._audit(db, "badge_add", uid=uid, username=username)
        return record

    def badge(self, uid: str) -> Badge | None:
        rec = self._get(_key("badge", uid))
        if rec is None:
            return None
        return Badge(rec["uid"], rec["username"], rec.get("enabled", True), rec.get("label", ""))

    def badges(self) -> list[dict]:
        return [v for _, v in self._range("badge")]

    # ------------------------------------------------------------ taps

    def open_clock_in(self, username: str) -> OpenClockIn | None:
        rec = self._get(_key("open", username))
        if rec is None:
            return None
        return OpenClockIn(rec["username"], clock.from_iso(rec["since"]), rec.get("uid", ""),
                           synced=not rec.get("unsynced"), boot=rec.get("boot", ""))

    def open_clock_ins(self) -> list[dict]:
        return [v for _, v in self._range("open")]

    def record(self, outcome: TapOutcome, stamp: clock.Stamp | None = None, *, notes: str = "",
               kiosk: str = "") -> int | None:
        """Apply a tap's outcome atomically: the state change and its audit line.

        Returns the outbox id of a queued entry (clock-out), else None.
        """
        stamp_extra = stamp.to_dict() if stamp is not None else {"at": clock.to_iso(outcome.at)}
        stamp_extra.pop("at")
        with self.transaction() as db:
            entry_id = None
            if outcome.kind is TapKind.CLOCK_IN:
                if outcome.stale is not None:
                    key = _key("open", outcome.stale.username)
                    opened = db.get(key)
                    if opened is None or clock.from_iso(opened["since"]) != outcome.stale.since:
                        raise StoreError(f"open clock-in of {outcome.username} changed under the tap")
                    self._flag(db, key, opened, outcome.message or "stale clock-in")
                db[_key("open", outcome.username)] = {
                    "username": outcome.username, "uid": outcome.uid,
                    "since": clock.to_iso(outcome.at), **stamp_extra,
                }
            elif outcome.kind is TapKind.CLOCK_OUT:
                key = _key("open", outcome.username)
                opened = db.get(key)
                if opened is None or clock.from_iso(opened["since"]) != outcome.since:
                    raise StoreError(f"open clock-in of {outcome.username} changed under the tap")
                unsynced = opened.get("unsynced") or stamp_extra.get("unsynced")
                if (outcome.at - outcome.since).total_seconds() < MIN_ENTRY_SECONDS and not unsynced:
                    # (with an unsynchronised end, fix_unsynced decides once the clock syncs)
                    raise StoreError("refusing an entry whose end is not after its start")
                entry_id = self._next_id(db)
                entry = {
                    "id": entry_id, "username": outcome.username, "uid": outcome.uid,
                    "from": opened["since"], "to": clock.to_iso(outcome.at), "notes": notes,
                    "kiosk": kiosk, "queued_at": clock.to_iso(clock.utcnow()),
                    "attempts": 0, "last_error": None, "last_attempt": None,
                }
                if opened.get("unsynced"):
                    entry["from_unsynced"] = {"boottime": opened["boottime"], "boot": opened["boot"]}
                if stamp_extra.get("unsynced"):
                    entry["to_unsynced"] = {"boottime": stamp_extra["boottime"], "boot": stamp_extra["boot"]}
                db[_key("outbox", entry_id)] = entry
                del db[key]
            self._audit(db, str(outcome.kind), tap_at=clock.to_iso(outcome.at), uid=outcome.uid,
                        username=outcome.username, entry=entry_id, **stamp_extra)
        return entry_id

    def _flag(self, db: SqliteDict, key: str, record: dict, reason: str) -> int:
        """Move an open clock-in or a queued entry to the review list."""
        ident = record.get("id") if key.startswith("outbox:") else self._next_id(db)
        db[_key("flagged", ident)] = {**record, "id": ident, "was": key.split(":")[0], "reason": reason,
                                      "flagged_at": clock.to_iso(clock.utcnow())}
        del db[key]
        return ident

    # ------------------------------------------------------------ outbox

    def outbox(self, limit: int | None = None) -> list[dict]:
        """Queued entries, oldest first."""
        return [v for _, v in self._range("outbox", limit=limit)]

    def outbox_entry(self, entry_id: int) -> dict | None:
        return self._get(_key("outbox", entry_id))

    def outbox_count(self) -> int:
        return self._count("outbox")

    def update_entry(self, entry_id: int, **changes: Any) -> dict | None:
        """Merge ``changes`` into a queued entry (attempt bookkeeping); None if it left the queue."""
        with self.transaction() as db:
            key = _key("outbox", entry_id)
            entry = db.get(key)
            if entry is None:
                return None
            entry.update(changes)
            db[key] = entry
            return entry

    def mark_delivered(self, entry_id: int, server_id: Any = None) -> bool:
        """Move a confirmed entry out of the queue, keeping the server's id."""
        return self.mark_delivered_many([(entry_id, server_id)]) == 1

    def mark_delivered_many(self, marks: list[tuple[int, Any]]) -> int:
        """Move a batch of confirmed entries out of the queue in one transaction (one fsync).

        Returns how many were still queued and moved.
        """
        now = clock.to_iso(clock.utcnow())
        server_ids = {_key("outbox", entry_id): server_id for entry_id, server_id in marks}
        with self.transaction() as db:
            found = self._get_many(list(server_ids))  # one query, not one per entry
            if not found:
                return 0
            db.update({_key("delivered", entry["id"]): {**entry, "server_id": server_ids[key], "delivered_at": now}
                       for key, entry in found.items()})
            self._delete_many(list(found))
            last_key = next(reversed(found))
            db["status:last_delivery"] = {"at": now, "id": found[last_key]["id"], "server_id": server_ids[last_key]}
        return len(found)

    def reject(self, entry_id: int, status: int | None, reason: str) -> bool:
        """Move a permanently refused entry to the rejected list, for an administrator."""
        with self.transaction() as db:
            entry = db.get(_key("outbox", entry_id))
            if entry is None:
                return False
            db[_key("rejected", entry_id)] = {**entry, "status": status, "reason": reason,
                                               "rejected_at": clock.to_iso(clock.utcnow())}
            del db[_key("outbox", entry_id)]
            self._audit(db, "rejected", entry=entry_id, status=status, reason=reason)
        return True

    def rejected(self) -> list[dict]:
        return [v for _, v in self._range("rejected")]

    def retry_rejected(self, entry_id: int) -> bool:
        """Put a rejected entry back in the queue with a fresh attempt count."""
        with self.transaction() as db:
            entry = db.get(_key("rejected", entry_id))
            if entry is None:
                return False
            for k in ("status", "reason", "rejected_at"):
                entry.pop(k, None)
            entry.update(attempts=0, last_error=None, last_attempt=None, next_attempt=None, ambiguous=False)
            db[_key("outbox", entry_id)] = entry
            del db[_key("rejected", entry_id)]
            self._audit(db, "retry", entry=entry_id)
        return True

    def drop(self, entry_id: int, *, reason: str = "") -> dict | None:
        """Delete a queued or rejected entry for good, keeping a copy in the audit log."""
        with self.transaction() as db:
            for prefix in ("outbox", "rejected"):
                entry = db.get(_key(prefix, entry_id))
                if entry is not None:
                    del db[_key(prefix, entry_id)]
                    self._audit(db, "drop", entry=entry_id, was=prefix, reason=reason, copy=entry)
                    return entry
        return None

    def delivered(self, limit: int | None = None) -> list[dict]:
        """Delivered entries, newest first."""
        return [v for _, v in self._range("delivered", reverse=True, limit=limit)]

    # ------------------------------------------------------------ review, audit, status

    def flagged(self) -> list[dict]:
        return [v for _, v in self._range("flagged")]

    def flagged_count(self) -> int:
        return self._count("flagged")

    def rejected_count(self) -> int:
        return self._count("rejected")

    def audit(self, limit: int | None = None) -> list[dict]:
        """Audit records, newest first."""
        return [v for _, v in self._range("audit", reverse=True, limit=limit)]

    def set_status(self, name: str, value: Any) -> None:
        """Daemon facts for ``kiosk status`` (last error, sender state), shared across processes."""
        with self.transaction() as db:
            db[_key("status", name)] = value

    def status_value(self, name: str, default=None):
        return self._get(_key("status", name), default)

    def fix_unsynced(self, correct, max_session_seconds: float | None = None) -> dict[str, int]:
        """Replace stamps taken before the clock synchronised; call once it has.

        ``correct(info) -> datetime | None`` gives the true time of an unsynced
        stamp, or None when it cannot be known (the kiosk rebooted before the
        clock synced): such a clock-in or entry is flagged for review instead, as is
        an entry that turns out longer than ``max_session_seconds`` (a forgotten
        clock-out: the tap that closed it was most likely meant as a clock-in).
        """
        fixed = flagged = 0
        with self.transaction() as db:
            for key, rec in list(self._range("open")):
                if not rec.get("unsynced"):
                    continue
                true = correct({"boottime": rec["boottime"], "boot": rec["boot"]})
                if true is None:
                    self._flag(db, key, rec, "clock was not synchronised at clock-in; true time unknown")
                    flagged += 1
                    continue
                for k in ("unsynced", "boottime", "boot"):
                    rec.pop(k)
                db[key] = {**rec, "since": clock.to_iso(true), "clock_corrected": True}
                fixed += 1
            for key, entry in list(self._range("outbox")):
                if not (entry.get("from_unsynced") or entry.get("to_unsynced")):
                    continue
                new, reason = dict(entry, clock_corrected=True), None
                for end in ("from", "to"):
                    info = new.pop(f"{end}_unsynced", None)
                    if info:
                        true = correct(info)
                        if true is None:
                            reason = "clock was not synchronised at the tap; true times unknown"
                            break
                        new[end] = clock.to_iso(true)
                if reason is None:
                    length = (clock.from_iso(new["to"]) - clock.from_iso(new["from"])).total_seconds()
                    if length < MIN_ENTRY_SECONDS:
                        reason = "corrected times end before they start"
                    elif max_session_seconds is not None and length > max_session_seconds:
                        reason = (f"{length / 3600:.1f}h once the clock was corrected, longer than "
                                  "max_session_hours: probably a forgotten clock-out; check this person's day")
                if reason:
                    self._flag(db, key, entry, reason)
                    flagged += 1
                else:
                    db[key] = new
                    fixed += 1
        return {"fixed": fixed, "flagged": flagged}

    def prune(self, before: datetime) -> int:
        """Delete audit records and delivered entries older than ``before`` (the history limit).

        Queued, rejected and flagged entries and open clock-ins are never pruned:
        they still need someone. Returns how many records went.
        """
        cutoff = clock.to_iso(before)
        removed = 0
        for prefix, stamp in (("audit", "at"), ("delivered", "delivered_at")):
            while True:  # oldest first, a batch at a time: ids grow with time
                batch = self._range(prefix, limit=PRUNE_BATCH)
                old = [key for key, rec in batch if rec.get(stamp, "") < cutoff]
                if old:
                    with self.transaction():
                        self._delete_many(old)
                    removed += len(old)
                if len(old) < PRUNE_BATCH:
                    break
        return removed

    def summary(self) -> dict:
        """Everything ``kiosk status`` shows."""
        oldest = self.outbox(limit=1)
        return {
            "open": self.open_clock_ins(),
            "outbox": self.outbox_count(),
            "oldest_queued_at": oldest[0]["queued_at"] if oldest else None,
            "rejected": self.rejected_count(),
            "flagged": self.flagged_count(),
            "last_delivery": self.status_value("last_delivery"),
            "last_error": self.status_value("last_error"),
            "sender": self.status_value("sender"),
            "reader": self.status_value("reader"),
            "feedback": self.status_value("feedback"),  # a feedback device's health (the display)
        }
