"""Is a daemon running on this store? A heartbeat file beside the store, locked by the daemon.

Why a file of its own and not a record in the store:

- the daemon touches it (``utime``) from its main loop about once a second; a
  store record would cost a transaction and an fsync each time, an SD card's
  worth of writes a day;
- ``kiosk restore`` must know while the store itself may be unreadable;
- the daemon holds an ``flock`` on it for its whole life, released by the
  kernel however the process ends (``kill -9`` included): a lock held means a
  process is alive, a fresh modification time means its main loop turns.

The file (``kiosk.daemon`` in the state directory) holds the daemon's pid, boot
id and start time as JSON. ``kiosk status`` reads it with :func:`daemon_state`;
``kiosk restore`` takes the lock itself (:func:`exclusive`) so that no daemon
can start while the store is being replaced.

Never open the store's own file this way: see :mod:`kiosk.store.db`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kiosk.exc import StoreError

HEARTBEAT_NAME = "kiosk.daemon"
FRESH_SECONDS = 5.0  # a heartbeat younger than this: the daemon's main loop is turning
BEAT_EVERY = 1.0
CLAIM_SECONDS = 1.0  # a `kiosk status` may hold a shared lock for a moment: retry this long
log = logging.getLogger("kiosk.store")


class DaemonRunning(StoreError):
    """A daemon (or a restore) holds the store: the command must not go on."""


def heartbeat_path(store_path: str | os.PathLike) -> Path:
    """The heartbeat file of the store at ``store_path`` (same directory)."""
    return Path(store_path).with_name(HEARTBEAT_NAME)


def _boot_id() -> str:
    from kiosk.clock import boot_id

    return boot_id()


@dataclass(frozen=True)
class DaemonState:
    """What the heartbeat says: ``running`` (lock held and heartbeat fresh), the pid, when last seen.

    ``alive``: some process holds the lock (a daemon, maybe stalled, or a restore).
    """

    running: bool
    pid: int | None = None
    last_seen: datetime | None = None
    alive: bool = False
    stopped_at: datetime | None = None

    @property
    def state(self) -> str:
        if self.running:
            return "running"
        if self.alive:
            return "not responding"
        return "not running"

    def to_record(self) -> dict:
        """The ``daemon`` object of ``kiosk status --json``."""
        return {"running": self.running, "pid": self.pid if self.alive else None,
                "last_seen": self.last_seen.isoformat() if self.last_seen else None, "state": self.state}


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _read_info(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode("utf-8")) if data else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def daemon_state(store_path: str | os.PathLike, *, now: float | None = None) -> DaemonState:
    """Whether a daemon runs on the store at ``store_path``, read from its heartbeat file.

        >>> daemon_state("/var/lib/kiosk/kiosk.sqlite").to_record()     # doctest: +SKIP
        {'running': True, 'pid': 812, 'last_seen': '2026-11-30T08:02:11.412345+00:00', 'state': 'running'}
    """
    path = heartbeat_path(store_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return DaemonState(False)
    except OSError:  # not ours to read: judge by the pid and the modification time alone
        return _guess(path, now)
    try:
        info = _read_info(fd)
        mtime = os.fstat(fd).st_mtime
        alive = not _try_lock(fd, fcntl.LOCK_SH)  # the shared lock is dropped when fd closes
    finally:
        os.close(fd)
    return _state(info, mtime, alive, now)


def _guess(path: Path, now: float | None) -> DaemonState:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return DaemonState(False)
    return DaemonState(False, last_seen=datetime.fromtimestamp(mtime, UTC))


def _state(info: dict, mtime: float, alive: bool, now: float | None) -> DaemonState:
    now = time.time() if now is None else now
    pid = info.get("pid") if isinstance(info.get("pid"), int) else None
    stopped = info.get("stopped_at")
    stopped_at = datetime.fromisoformat(stopped) if isinstance(stopped, str) and not alive else None
    fresh = alive and now - mtime < FRESH_SECONDS
    # A file no daemon ever wrote (a restore made it to take the lock) says nothing about when one ran.
    seen = datetime.fromtimestamp(mtime, UTC) if pid is not None else None
    return DaemonState(fresh, pid, seen, alive, stopped_at)


class Heartbeat:
    """The daemon's side: :meth:`claim` the file at start, :meth:`beat` from the main loop, :meth:`release`.

        >>> hb = Heartbeat(store.path)                      # doctest: +SKIP
        >>> hb.claim()                                      # DaemonRunning if another holds it
        >>> hb.beat()                                       # at most once a second, cheap
    """

    def __init__(self, store_path: str | os.PathLike):
        self.path = heartbeat_path(store_path)
        self._fd: int | None = None
        self._last = 0.0
        self._info: dict = {}

    def claim(self, timeout: float = CLAIM_SECONDS) -> None:
        """Lock the heartbeat file for this process's life; :class:`DaemonRunning` if another holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        deadline = time.monotonic() + timeout
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                info = _read_info(fd)
                os.close(fd)
                who = f"pid {info['pid']}" if isinstance(info.get("pid"), int) else "another process"
                raise DaemonRunning(f"another kiosk daemon or a restore ({who}) is using the store "
                                    f"{self.path.with_name('kiosk.sqlite')}")
            time.sleep(0.05)
        self._fd = fd
        self._info = {"pid": os.getpid(), "boot": _boot_id(), "started_at": datetime.now(UTC).isoformat()}
        self._write(self._info)
        self.beat(force=True)

    def _write(self, info: dict) -> None:
        assert self._fd is not None
        data = json.dumps(info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def beat(self, *, force: bool = False) -> None:
        """Mark the daemon alive now (at most once a second unless ``force``)."""
        if self._fd is None:
            return
        mono = time.monotonic()
        if force or mono - self._last >= BEAT_EVERY:
            self._last = mono
            try:
                os.utime(self._fd)
            except OSError as exc:
                log.warning("cannot update the heartbeat %s: %s", self.path, exc.strerror)

    def release(self) -> None:
        """Say when the daemon stopped, and let go of the lock."""
        if self._fd is None:
            return
        try:
            self._write({**self._info, "stopped_at": datetime.now(UTC).isoformat()})
            os.utime(self._fd)
        except OSError:
            pass
        finally:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


@contextmanager
def exclusive(store_path: str | os.PathLike) -> Iterator[None]:
    """Hold the daemon's lock: no daemon runs on the store, and none can start, inside this block.

    :class:`DaemonRunning` if a daemon holds it now or its heartbeat is fresh.
    """
    path = heartbeat_path(store_path)
    state = daemon_state(store_path)
    if state.running or state.alive:
        raise DaemonRunning(running_message(state, store_path))
    if not path.parent.is_dir():
        yield
        return
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        _give_to_dir_owner(path)
        if not _try_lock(fd, fcntl.LOCK_EX):
            raise DaemonRunning(running_message(daemon_state(store_path), store_path))
        yield
    finally:
        os.close(fd)


def running_message(state: DaemonState, store_path) -> str:
    pid = f" (pid {state.pid})" if state.pid else ""
    return (f"a kiosk daemon{pid} is running on {store_path}: stop it first "
            "(sudo systemctl stop kiosk), then try again")


def _give_to_dir_owner(path: Path) -> None:
    """Run as root, a heartbeat file created here must stay usable by the daemon's user."""
    if os.geteuid() != 0:
        return
    try:
        st = path.parent.stat()
        if st.st_uid != 0:
            os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    except OSError:
        pass
