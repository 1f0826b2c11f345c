"""One delivery at a time: a round lock in this process, an flock beside the store for other processes.

The daemon's sender thread and a ``kiosk queue flush`` in another process may
both want to deliver the same outbox; if they did at once, both could POST the
same entry. The flock on ``<store>.sender-lock`` serialises them (it is
released by the kernel when a process dies, so a killed sender never leaves
it held), and the in-process lock serialises the thread and ``flush()`` of
one :class:`~kiosk.delivery.sender.Sender`.

    >>> with outbox_lock("/var/lib/kiosk/kiosk.sqlite", threading.Lock(), deadline=None):  # doctest: +SKIP
    ...     deliver()
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kiosk.exc import SenderBusy

POLL = 0.05


@contextmanager
def outbox_lock(store_path: str | os.PathLike, local: threading.Lock, *, deadline: float | None) -> Iterator[None]:
    """Hold ``local`` and the flock on ``<store_path>.sender-lock``.

    ``deadline`` None: try once, raise :class:`~kiosk.exc.SenderBusy` if either is
    taken; else wait until that ``time.monotonic()`` for them.
    """
    while not local.acquire(timeout=POLL):
        if deadline is None or time.monotonic() >= deadline:
            raise SenderBusy("another delivery is under way in this process")
    fd = -1
    try:
        fd = os.open(f"{store_path}.sender-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is None or time.monotonic() >= deadline:
                    raise SenderBusy("another process (the daemon?) is delivering the outbox") from None
                time.sleep(POLL)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the flock
        local.release()
