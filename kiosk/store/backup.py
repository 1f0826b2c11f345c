"""Backups of the store, and restoring one.

A backup is a consistent copy taken through SQLite's online backup API
(:meth:`sqlite3.Connection.backup`) in one step: one read transaction sees one
moment of the store, and in WAL mode the daemon goes on writing meanwhile. The
copy is a self-contained file (rollback journal, no ``-wal`` beside it),
checked with ``PRAGMA integrity_check``, made private (0600) and renamed into
place, so a half-written backup never carries the final name.

A restore refuses while a daemon runs and holds the daemon's lock for its
whole length (:func:`kiosk.store.presence.exclusive`), so none can start in the
middle. It checks the backup first (SQLite file, integrity, the kiosk's table,
a schema this kiosk understands, JSON records), keeps the replaced store beside
it (``kiosk.sqlite.replaced-<time>``), swaps the new file in with one rename
(the store's path is never missing, and the old ``-wal`` goes along with the old
store, never left beside the new one), and never opens the store with Python's
``open()`` (see :mod:`kiosk.store.db`): every file is read through SQLite.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiosk.exc import Conflict, StoreCorrupt, StoreError, StoreTooNew
from kiosk.store import presence
from kiosk.store.db import SCHEMA_VERSION, STORE_NAME, TABLE, Database

PREFIXES = ("badge", "open", "outbox", "held", "rejected", "flagged", "delivered", "audit")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # a backup or a temporary copy, never the open store
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: sqlite3.Connection, dest: Path) -> str:
    """Copy ``src`` into a new file ``dest`` in one backup step; its integrity check result."""
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)  # pages=-1: the whole database in one step, one consistent snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        return dst.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        dst.close()


def inspect_backup(path: str | os.PathLike) -> dict[str, Any]:
    """Check that ``path`` is a usable kiosk store; its schema version and record counts.

    :class:`~kiosk.exc.StoreCorrupt` (not SQLite, damaged, not a kiosk store, bad
    records) or :class:`~kiosk.exc.StoreTooNew` saying what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open: {exc}") from None
    try:
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"{path} is not a kiosk store backup ({exc})") from None
        if integrity != "ok":
            raise StoreCorrupt(f"{path}: integrity check failed: {integrity[:200]}")
        columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{TABLE}")')]
        if columns[:2] != ["key", "value"]:
            raise StoreCorrupt(f"{path} is an SQLite database but not a kiosk store (no table {TABLE!r})")
        row = conn.execute(f'SELECT value FROM "{TABLE}" WHERE key = ?', ("meta:schema",)).fetchone()
        try:
            schema = json.loads(row[0]) if row else None
        except (TypeError, ValueError):
            schema = None
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise StoreCorrupt(f"{path}: no schema version: not a kiosk store")
        if schema > SCHEMA_VERSION:
            raise StoreTooNew(f"{path} has schema version {schema}, newer than this kiosk understands "
                              f"({SCHEMA_VERSION}); restore it with a newer kiosk")
        bad = conn.execute(f'SELECT COUNT(*) FROM "{TABLE}" WHERE NOT json_valid(value)').fetchone()[0]
        if bad:
            raise StoreCorrupt(f"{path}: {bad} records are not JSON (not written by the kiosk)")
        counts = {p: conn.execute(f'SELECT COUNT(*) FROM "{TABLE}" WHERE key >= ? AND key < ?',
                                  (p + ":", p + ";")).fetchone()[0] for p in PREFIXES}
        return {"path": str(path), "schema": schema, "integrity": integrity, "counts": counts}
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"{path} is not a kiosk store backup ({exc})") from None
    finally:
        conn.close()


def _private_tmp(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


class BackupRecords(Database):
    """``backup``: a consistent online copy of this store."""

    def backup(self, dest: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Any]:
        """Copy the store to ``dest`` while it is in use; what :func:`inspect_backup` says of the copy.

            >>> store.backup("/root/kiosk-2026-11-30.sqlite")["counts"]["badges"]   # doctest: +SKIP
            42
        """
        dest = Path(dest).absolute()
        if dest.exists() and dest.resolve() == self.path.resolve():
            raise Conflict(f"{dest} is the store itself: choose another file")
        if dest.name.startswith(STORE_NAME) and dest.parent.resolve() == self.path.parent.resolve():
            raise Conflict(f"{dest}: a name the store uses for its own files; choose another")
        if dest.is_dir():
            raise Conflict(f"{dest} is a directory: give a file name")
        if dest.exists() and not overwrite:
            raise Conflict(f"{dest} exists: choose another name, or --force to replace it")
        if not dest.parent.is_dir():
            raise StoreError(f"{dest.parent}: no such directory")
        tmp = _private_tmp(dest)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from the first byte
            os.close(fd)
            src = sqlite3.connect(self.path)
            try:
                integrity = _copy(src, tmp)
            finally:
                src.close()
            if integrity != "ok":
                raise StoreCorrupt(f"the copy failed its integrity check ({integrity[:200]}): the store may be "
                                   "damaged; run kiosk doctor")
            _fsync_file(tmp)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        except sqlite3.Error as exc:
            raise StoreError(f"backup to {dest} failed: {exc}") from None
        except OSError as exc:
            raise StoreError(f"backup to {dest} failed: {exc.strerror or exc}") from None
        finally:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        info = inspect_backup(dest)
        self._audit_backup(dest, info)
        return info

    def _audit_backup(self, dest: Path, info: dict[str, Any]) -> None:
        with self.transaction() as db:
            self._audit(db, "backup", file=str(dest), counts=info["counts"])


def restore(src: str | os.PathLike, store_path: str | os.PathLike) -> dict[str, Any]:
    """Replace the store at ``store_path`` with backup ``src``; what was restored and where the old store went.

    Refuses (:class:`~kiosk.store.presence.DaemonRunning`) while a daemon runs.
    No :class:`~kiosk.store.Store` may be open on ``store_path`` in this process.
    """
    src, store_path = Path(src).absolute(), Path(store_path).absolute()
    if src.exists() and store_path.exists() and src.resolve() == store_path.resolve():
        raise Conflict(f"{src} is the store itself")
    info = inspect_backup(src)
    state_dir = store_path.parent
    if not state_dir.is_dir():
        state_dir.mkdir(mode=0o750, parents=True)
    with presence.exclusive(store_path):
        tmp = _private_tmp(store_path)
        aside = None
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            os.close(fd)
            conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
            try:
                integrity = _copy(conn, tmp)  # the slow part, while the store is still whole
            finally:
                conn.close()
            if integrity != "ok":
                raise StoreCorrupt(f"the restored copy failed its integrity check: {integrity[:200]}")
            _match_dir_owner(tmp, store_path if store_path.exists() else None)
            _fsync_file(tmp)
            # The store's path is never missing (a daemon starting now must not create an empty one),
            # and no -wal of the old store is ever left beside the new one.
            aside = _keep_aside(store_path)
            os.replace(tmp, store_path)
            _fsync_dir(state_dir)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    with _opened(store_path) as store:  # the store's own check: schema, migration if older
        with store.transaction() as db:
            store._audit(db, "restore", file=str(src), replaced=str(aside) if aside else None,
                         counts=info["counts"])
    return {**info, "store": str(store_path), "replaced": str(aside) if aside else None}


def _opened(store_path: Path):
    from kiosk.store import Store

    return Store(store_path, create=False)


def _keep_aside(store_path: Path) -> Path | None:
    """Keep the current store (checkpointed if it can be) under a new name beside it, its -wal and -shm
    moved along; the store's own path stays in place until the new file replaces it. The new name."""
    if not store_path.exists():
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{store_path}{suffix}").unlink(missing_ok=True)
        return None
    try:  # fold the WAL into the file
        conn = sqlite3.connect(store_path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error:
        pass  # a damaged store: keep its files as they are
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = store_path.with_name(f"{store_path.name}.replaced-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = store_path.with_name(f"{store_path.name}.replaced-{stamp}-{n}")
    os.link(store_path, aside)
    for suffix in ("-wal", "-shm", "-journal"):
        extra = Path(f"{store_path}{suffix}")
        if extra.exists():
            os.replace(extra, f"{aside}{suffix}")
    return aside


def _match_dir_owner(path: Path, like: Path | None) -> None:
    """Run as root, give the restored store to the state directory's owner (the daemon's user)."""
    try:
        mode = stat.S_IMODE(os.stat(like).st_mode) if like else 0o640
        os.chmod(path, mode & 0o660 or 0o640)
    except OSError:
        pass
    if os.geteuid() != 0:
        return
    st = path.parent.stat()
    if st.st_uid != 0:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
