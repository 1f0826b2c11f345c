"""The store's plumbing: one SQLite file through sqlitedict, one atomic transaction at a time.

Why it looks like this:

- One sqlitedict table (``kiosk``) holds every record under a key prefix
  (``badge:``, ``open:``, ``outbox:``, ``held:``, ``rejected:``, ``delivered:``,
  ``flagged:``, ``audit:``, ``status:``, ``counter:``, ``meta:``). sqlitedict
  gives each table its own connection, so there is no transaction across tables;
  one table makes every state change (a clock-out deletes the open clock-in,
  queues the entry and writes the audit line) a single SQLite transaction.
- Each transaction starts with ``BEGIN IMMEDIATE`` so read-modify-write is
  atomic across processes too (the daemon and ``kiosk`` CLI commands).
- JSON codec, never pickle: whoever can write the file must not run code in the daemon.
- WAL in every process (mixed journal modes lock each other out), and
  ``synchronous=FULL`` because sqlitedict turns fsync off: a tap is on disk before
  the feedback says "done".
- Reads go by key range on the primary key, a page at a time (:meth:`Database._page`):
  no call on the tap or the delivery path reads more than a page, whatever the
  size of the queue or the history.
- The file's identity (device, inode) is noted at open: a store deleted or
  replaced under a running daemon is noticed (:meth:`Database.check_identity`)
  instead of acknowledging taps into a file that no longer exists.
- Connections to one file within this process (the daemon's and the sender's)
  take turns writing through one Python lock: SQLite's own busy handler would
  poll with sleeps of up to 100 ms, and a tap would feel them.
- Python never opens the database file itself while SQLite has it open in this
  process: closing any descriptor of a file drops every POSIX lock the process
  holds on it, SQLite's included, and another process could then checkpoint and
  delete the WAL under us (writes lost). The header check before the first
  connection is the only such open, and :data:`_OPEN` makes sure it is the first.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlitedict import SqliteDict

from kiosk.exc import StoreCorrupt, StoreError, StoreGone, StoreMissing, StoreTooNew
from kiosk.model import damaged, to_iso

SCHEMA_VERSION = 2
TABLE = "kiosk"
PAGE = 64  # records per read on the tap and delivery paths
CHUNK = 500  # keys per statement (SQLite's bound-parameter limit is 999 on old builds)
STORE_NAME = "kiosk.sqlite"
log = logging.getLogger("kiosk.store")

_OPEN: dict[tuple[int, int], int] = {}  # (device, inode) -> connections open in this process
_WRITERS: dict[tuple[int, int], threading.Lock] = {}  # one write lock per file in this process
_OPEN_LOCK = threading.Lock()


DAMAGED = object()  # what decode() gives for a value that is not JSON


def decode(k: str, raw: Any) -> Any:
    """The JSON value stored under ``k``, or :data:`DAMAGED` (logged once): never anything but JSON,
    so a pickle planted in the file is never unpickled."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        damaged(k, f"not JSON ({exc.__class__.__name__})")
        return DAMAGED


class Rows(list):
    """Decoded (key, value) pairs of one read; damaged values are left out, but :attr:`raw_count`
    and :attr:`last_key` still count them, so paging goes past them."""

    def __init__(self, raw: list[tuple[str, Any]]):
        super().__init__((k, v) for k, r in raw if (v := decode(k, r)) is not DAMAGED)
        self.raw_count = len(raw)
        self.last_key = raw[-1][0] if raw else None


def key(prefix: str, ident: int | str) -> str:
    """``outbox:000000000042``: numeric ids are zero-padded so that key order is id order."""
    return f"{prefix}:{ident:012d}" if isinstance(ident, int) else f"{prefix}:{ident}"


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


class Database:
    """The open store file: transactions, paged reads, identity. Thread-safe; safe beside other processes.

    ``create``: make the file (and its directory) when missing; without it a
    missing store raises :class:`~kiosk.exc.StoreMissing`. :attr:`created` says
    whether this open made a new store.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        self.created = False
        if not self.path.parent.is_dir():
            if not create:
                raise StoreMissing(f"no kiosk store at {self.path}: its directory does not exist")
            try:
                self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create state directory {self.path.parent}: {exc.strerror}") from None
        if not self.path.exists():
            if not create:
                raise StoreMissing(f"no kiosk store at {self.path} (has the daemon run, or a badge been added?)")
            self.created = True
        self._lock = threading.RLock()
        self._db: SqliteDict | None = None
        self._registered: tuple[int, int] | None = None
        self._writer = threading.Lock()  # replaced by the file's shared lock once registered
        self._identity = self._stat_identity()
        with _OPEN_LOCK:
            if self._identity not in _OPEN:  # see the module docstring: never while SQLite holds it
                _check_header(self.path)
            self._register()
        try:
            self._db = SqliteDict(
                str(self.path), tablename=TABLE, autocommit=False, journal_mode="WAL",
                encode=json.dumps, decode=json.loads, outer_stack=False,
            )
            self._db.conn.select_one("PRAGMA synchronous=FULL")
        except Exception as exc:  # sqlite3 errors arrive wrapped in many shapes
            self.close()
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        if self._identity is None:  # created just now
            with _OPEN_LOCK:
                self._identity = self._stat_identity()
                self._register()
        self._check_schema()
        self._match_owner()

    # ------------------------------------------------------------ life cycle

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close(force=True)
                self._db = None
            with _OPEN_LOCK:
                if self._registered is not None:
                    _OPEN[self._registered] -= 1
                    if not _OPEN[self._registered]:
                        del _OPEN[self._registered]
                        _WRITERS.pop(self._registered, None)
                    self._registered = None

    def _register(self) -> None:
        """Count this connection against the file's identity (call with _OPEN_LOCK held)."""
        self._registered = self._identity
        if self._identity is not None:
            _OPEN[self._identity] = _OPEN.get(self._identity, 0) + 1
            self._writer = _WRITERS.setdefault(self._identity, threading.Lock())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> SqliteDict:
        if self._db is None:
            raise StoreError("store is closed")
        return self._db

    def _stat_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def check_identity(self) -> None:
        """Raise :class:`~kiosk.exc.StoreGone` if the file was deleted or replaced since it was opened.

        SQLite keeps writing to the open (unlinked) inode: without this check a
        daemon would go on acknowledging taps that vanish at the next restart.
        """
        now = self._stat_identity()
        if now is None:
            raise StoreGone(f"the store {self.path} was deleted while open: taps cannot be kept; "
                            "restore it (kiosk restore) or restart the daemon")
        if self._identity is not None and now != self._identity:
            raise StoreGone(f"the store {self.path} was replaced while open (another file is there now): "
                            "restart the daemon to use it")

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

    # ------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[SqliteDict]:
        """One atomic, durable write: BEGIN IMMEDIATE ... COMMIT (fsync), or ROLLBACK."""
        with self._lock, self._writer:
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

    # Reads take the lock too: all threads of one Store share sqlitedict's one connection, so a
    # read between another thread's BEGIN and COMMIT would see rows that may never be committed.

    def _page(self, prefix: str, *, after: str | None = None, before: str | None = None,
              reverse: bool = False, limit: int | None = PAGE) -> list[tuple[str, Any]]:
        """(key, value) pairs under ``prefix:``, in key order (newest first with ``reverse``),
        strictly after ``after`` / before ``before`` (full keys), at most ``limit`` of them."""
        low, high = prefix + ":", prefix + ";"  # ';' sorts right after ':'
        where, args = ["key >= ?", "key < ?"], [low, high]
        if after is not None:
            where.append("key > ?")
            args.append(after)
        if before is not None:
            where.append("key < ?")
            args.append(before)
        sql = (f'SELECT key, value FROM "{TABLE}" WHERE {" AND ".join(where)} '
               f'ORDER BY key {"DESC" if reverse else "ASC"}')
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            raw = list(self._open().conn.select(sql, tuple(args)))
        return Rows(raw)

    def _walk(self, prefix: str, *, reverse: bool = False, page: int = PAGE * 8) -> Iterator[tuple[str, Any]]:
        """Every record under ``prefix``, a page at a time (constant memory; the lock is free between pages)."""
        cursor: str | None = None
        while True:
            if reverse:
                rows = self._page(prefix, before=cursor, reverse=True, limit=page)
            else:
                rows = self._page(prefix, after=cursor, limit=page)
            yield from rows
            if rows.raw_count < page:
                return
            cursor = rows.last_key

    @staticmethod
    def _typed(cls, rows) -> Iterator:
        """The records among ``rows`` (key, value) that read as ``cls``; the others are logged and skipped."""
        return (r for k, v in rows if (r := cls.parse(v, k)) is not None)

    def _count(self, prefix: str) -> int:
        with self._lock:
            row = self._open().conn.select_one(
                f'SELECT COUNT(*) FROM "{TABLE}" WHERE key >= ? AND key < ?', (prefix + ":", prefix + ";"))
        return row[0]

    def _get(self, k: str, default=None):
        """The record under ``k``; ``default`` when there is none, or when it cannot be decoded."""
        with self._lock:
            row = self._open().conn.select_one(f'SELECT value FROM "{TABLE}" WHERE key = ?', (k,))
        if row is None:
            return default
        value = decode(k, row[0])
        return default if value is DAMAGED else value

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        """The records stored under ``keys`` (missing ones left out), in key order."""
        found: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), CHUNK):
                chunk = keys[i:i + CHUNK]
                sql = f'SELECT key, value FROM "{TABLE}" WHERE key IN ({",".join("?" * len(chunk))}) ORDER BY key'
                for k, raw in self._open().conn.select(sql, tuple(chunk)):
                    value = decode(k, raw)
                    if value is not DAMAGED:
                        found[k] = value
        return found

    def _delete_many(self, keys: list[str]) -> None:
        """Delete ``keys`` inside the current transaction (sqlitedict's del checks each key first)."""
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            self._open().conn.execute(f'DELETE FROM "{TABLE}" WHERE key IN ({",".join("?" * len(chunk))})',
                                      tuple(chunk))

    def _next_id(self, db: SqliteDict) -> int:
        """Next id from one counter shared by all records; call inside a transaction."""
        n = db.get("meta:seq", 0) + 1
        db["meta:seq"] = n
        return n

    def _audit(self, db: SqliteDict, kind: str, *, at: str | None = None, **fields: Any) -> int:
        """Append an audit line inside the current transaction."""
        from kiosk import clock

        ident = self._next_id(db)
        db[key("audit", ident)] = {"id": ident, "at": at or to_iso(clock.utcnow()), "kind": kind, **fields}
        return ident

    def _bump(self, db: SqliteDict, counter: str, n: int = 1) -> None:
        """Add ``n`` to a persistent counter (metrics survive restarts) inside the current transaction."""
        k = key("counter", counter)
        try:
            count = int(db.get(k, 0))
        except (ValueError, TypeError, OverflowError) as exc:  # a damaged counter must not cost a tap
            damaged(k, f"counter reset ({exc.__class__.__name__})")
            count = 0
        db[k] = count + n

    def bump_counter(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a persistent counter in a transaction of its own (e.g. taps the store could not record)."""
        with self.transaction() as db:
            self._bump(db, counter, n)

    def counters(self) -> dict[str, int]:
        """Every persistent counter: ``{"taps:clock_in": 12, "deliveries:delivered": 9, ...}``."""
        return {k.split(":", 1)[1]: v for k, v in self._page("counter", limit=None)
                if isinstance(v, int) and not isinstance(v, bool)}

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` or what is wrong."""
        with self._lock:
            return self._open().conn.select_one("PRAGMA integrity_check")[0]

    # ------------------------------------------------------------ schema

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
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        """Bring an older store up to date, a page per transaction (safe to interrupt and resume)."""
        if version < 2:
            # Schema 2 keeps entries stamped before the clock was trusted under "held:", so that
            # delivery pages through sendable entries only.
            moved, cursor = 0, None
            while (rows := self._page("outbox", after=cursor, limit=CHUNK)).raw_count:
                cursor = rows.last_key
                held = [(k, e) for k, e in rows
                        if isinstance(e, dict) and (e.get("from_unsynced") or e.get("to_unsynced"))]
                if held:
                    with self.transaction() as db:
                        db.update({key("held", int(e["id"])): e for _, e in held})
                        self._delete_many([k for k, _ in held])
                    moved += len(held)
            with self.transaction() as db:
                db["meta:schema"] = 2
            log.info("store %s upgraded to schema 2 (%d held entries moved)", self.path, moved)
