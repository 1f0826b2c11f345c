"""Signals that can neither deadlock nor crash the main loop.

A Python signal handler runs between two bytecodes of the main thread, which
may be inside ``threading.Event.wait()`` holding the event's lock: a handler
that calls ``Event.set()`` then deadlocks, and a burst of signals nests
handlers until RecursionError. So the handlers here do nothing at all; the C
level writes each signal's number into a pipe (:func:`signal.set_wakeup_fd`),
and the main loop reads the pipe and acts: at most one reload per burst of
SIGHUPs, a clean stop on SIGTERM/SIGINT.

    >>> box = SignalBox()                      # doctest: +SKIP
    >>> box.install()                          # in the main thread
    >>> got = box.wait(1.0)                    # the signals since the last wait, as a set
    >>> signal.SIGHUP in got                   # doctest: +SKIP
    True

Other threads wake the loop with :meth:`SignalBox.kick` (a 0 byte in the same pipe).
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPPING = {signal.SIGTERM, signal.SIGINT}
KICK = 0  # not a signal number: "look again"
SETTLE = 0.05  # seconds in which further signals join a burst


def _ignore(signum, frame) -> None:
    """The Python-level handler: nothing to do, the byte in the pipe is the message."""


class SignalBox:
    """The self-pipe: signal numbers and kicks in, a set of what arrived out."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._installed = False
        self._previous: dict[int, object] = {}
        self._old_fd: int | None = None
        self._lock = threading.Lock()  # kick() never writes to a closed (maybe reused) descriptor
        self._closed = False

    def install(self) -> bool:
        """Route SIGTERM, SIGINT and SIGHUP into the pipe; only possible in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, _ignore)
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Give back the previous handlers and wake-up fd."""
        if not self._installed:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._old_fd if self._old_fd is not None else -1)
        self._installed = False

    def kick(self) -> None:
        """Wake :meth:`wait` from any thread (never blocks: a full pipe already means "wake up")."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._write, bytes([KICK]))
            except BlockingIOError:
                pass

    def wait(self, timeout: float | None, *, settle: float = SETTLE) -> set[int]:
        """Wait up to ``timeout`` seconds for a signal or a kick; return the signal numbers that came.

        Once something arrived, signals that follow within ``settle`` seconds join it:
        a burst (``systemctl reload`` run twice by a script) is one set, acted on once.
        """
        got = self._drain(timeout)
        if got - {KICK} and settle > 0:
            deadline = time.monotonic() + settle
            while (left := deadline - time.monotonic()) > 0 and not got & STOPPING:
                got |= self._drain(left)
        got.discard(KICK)
        return got

    def _drain(self, timeout: float | None) -> set[int]:
        """The bytes in the pipe once it is readable (within ``timeout``), as a set."""
        try:
            ready, _, _ = select.select([self._read], [], [], timeout)
        except InterruptedError:  # PEP 475 retries, but be safe on odd platforms
            ready = [self._read]
        got: set[int] = set()
        if not ready:
            return got
        while True:
            try:
                data = os.read(self._read, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            got.update(data)
            if len(data) < 4096:
                break
        return got

    def close(self) -> None:
        self.uninstall()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._read)
            os.close(self._write)
