"""The sender's status board: what ``kiosk status`` and the daemon's LEDs learn about delivery.

One worker publishes; readers are the daemon (``on_status``, for the LEDs and
the watchdog) and other processes (the status record ``sender`` in the store).
Why it is shaped like this:

- Persisted and announced **on change only**: an offline kiosk probing every
  five seconds must not write the store (an fsync) or log a line per probe.
  One log line per change of state, never one per retry.
- ``last_error`` is persisted apart (status record ``last_error``), also on
  change only; every message on this board is already untrusted text with the
  secret masked (see :mod:`kiosk.delivery.answers`).
- A request in progress is tracked (``request_started``/``request_ended``): the
  daemon asks :meth:`StatusBoard.in_request_for` for its watchdog health, and
  :meth:`StatusBoard.note_stuck` persists ``stuck_seconds`` so that ``kiosk
  status`` can say "stuck in a request for N s" while the worker is blocked.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kiosk import clock as clk
from kiosk.delivery.policy import State

log = logging.getLogger("kiosk.delivery")

WALL_MAX = 10 * 365 * 86400.0  # the furthest ahead a wall-clock time in the status may be


def wall(seconds_from_now: float) -> datetime:
    """Wall-clock time ``seconds_from_now`` ahead (for people and other processes)."""
    seconds = min(max(seconds_from_now, 0.0), WALL_MAX) if math.isfinite(seconds_from_now) else WALL_MAX
    return clk.utcnow() + timedelta(seconds=seconds)


class StatusBoard:
    """The published status dict; see :attr:`status` for its keys."""

    def __init__(self, store, *, on_status: Callable[[dict], None] | None = None,
                 probe_interval: Callable[[], float] = lambda: 0.0, monotonic: Callable[[], float] = time.monotonic):
        self.store = store
        self.on_status = on_status
        self._probe_interval = probe_interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"state": State.IDLE.value, "since": clk.to_iso(clk.utcnow()),
                                        "next_attempt": None, "last_error": None, "last_delivery": None,
                                        "queued": 0, "reason": None, "stuck_seconds": None}
        self._published: tuple | None = None
        self._problem = False
        self._error_persisted: str | None = None
        self._request_since: float | None = None
        self._stuck_noted: int | None = None

    @property
    def status(self) -> dict:
        """state, since, next_attempt (ISO UTC or None), last_error ({at, message} or None),
        last_delivery (ISO UTC or None), queued (outbox size when the state last changed),
        reason (why delivery is paused, or None), stuck_seconds (in one request this long, or None)."""
        with self._lock:
            return dict(self._status)

    @property
    def state(self) -> str:
        with self._lock:
            return self._status["state"]

    @property
    def problem(self) -> bool:
        """The published state is a pause (offline, credentials, global backoff, not TimeTrack, not configured)."""
        with self._lock:
            return self._problem

    def delivered(self) -> None:
        with self._lock:
            self._status["last_delivery"] = clk.to_iso(clk.utcnow())

    def set_error(self, message: str | None) -> None:
        """Record the last error (persisted when it changed)."""
        if not message:
            return
        with self._lock:
            error = {"at": clk.to_iso(clk.utcnow()), "message": message}
            self._status["last_error"] = error
            changed = message != self._error_persisted
            self._error_persisted = message
        if changed:
            try:
                self.store.set_status("last_error", error)
            except Exception:
                log.debug("cannot record the last error", exc_info=True)

    def publish(self, state: State, *, wait: float | None = None, error: str | None = None,
                queued: int | None = None, problem: bool = False, reason: str | None = None) -> None:
        """Update the status; persist it and call on_status only when it changed."""
        if queued is None:
            try:
                queued = self.store.outbox_count()
            except Exception:
                queued = self._status.get("queued", 0)
        next_attempt = clk.to_iso(wall(wait)) if wait is not None else None
        with self._lock:
            was_problem, self._problem = self._problem, problem
            previous = self._status["state"]
            key = (state, next_attempt[:19] if next_attempt else None, error, queued > 0)
            if key == self._published:
                return
            self._published = key
            if state != previous:
                self._status["since"] = clk.to_iso(clk.utcnow())
            self._status.update(state=state.value, next_attempt=next_attempt, queued=queued,
                                reason=reason if problem else None)
            status = dict(self._status)
        if state != previous or problem != was_problem:
            self._log_state(state, problem, was_problem, wait, error or "")
        self._persist(status)
        if self.on_status is not None:
            try:
                self.on_status(status)
            except Exception:
                log.exception("on_status callback failed")

    def _persist(self, status: dict) -> None:
        try:
            self.store.set_status("sender", status)
        except Exception:
            log.debug("cannot record the sender status", exc_info=True)

    def _log_state(self, state: State, problem: bool, was_problem: bool, wait: float | None, message: str) -> None:
        """One line per change of state: never one per retry or per probe."""
        if state is State.OFFLINE:
            probe = self._probe_interval()
            log.warning("offline (%s); %s", message,
                        f"probing every {probe:g}s" if probe > 0 else f"retrying in {wait or 0:.1f}s")
        elif state is State.AUTH:
            log.error("credentials rejected by TimeTrack (%s): delivery paused until the secret is updated",
                      message)
        elif state is State.NOT_TIMETRACK:
            log.error("delivery paused: %s; probing until TimeTrack answers again", message)
        elif state is State.BACKING_OFF and problem:
            log.warning("backing off %.1fs: %s", wait or 0.0, message)
        elif state is State.NOT_CONFIGURED:
            log.error("not delivering: %s", message)
        elif was_problem and not problem:
            log.info("delivery resumed")
        else:
            log.debug("sender %s", state)

    # ------------------------------------------------------------ requests in progress

    def request_started(self) -> None:
        with self._lock:
            self._request_since = self._monotonic()

    def request_ended(self) -> None:
        with self._lock:
            self._request_since = None
            noted, self._stuck_noted = self._stuck_noted, None
            if noted is not None:
                self._status["stuck_seconds"] = None
                status = dict(self._status)
        if noted is not None:
            self._persist(status)

    def in_request_for(self) -> float | None:
        """Seconds the worker has been in the request in hand (None: not in a request)."""
        with self._lock:
            since = self._request_since
        return None if since is None else self._monotonic() - since

    def note_stuck(self, threshold: float) -> float | None:
        """From another thread: persist ``stuck_seconds`` while the request in hand has lasted
        longer than ``threshold`` (once per whole second); returns how long it has."""
        seconds = self.in_request_for()
        if seconds is None or seconds < threshold:
            return seconds
        whole = int(seconds)
        with self._lock:
            if self._request_since is None or self._stuck_noted == whole:
                return seconds
            self._stuck_noted = whole
            self._status["stuck_seconds"] = whole
            status = dict(self._status)
        self._persist(status)
        return seconds
