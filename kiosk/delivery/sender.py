"""The outbox worker: one thread (or one ``flush()``) delivering queued entries to TimeTrack.

The parts, each in its own module:

- :mod:`~kiosk.delivery.rounds`: one round over the queue, shared by the thread and
  :meth:`Sender.flush` (which returns its report);
- :mod:`~kiosk.delivery.policy`: the states and the pure retry/backoff/pause decisions;
- :mod:`~kiosk.delivery.schedule`: per-entry waits (bounded) and the in-flight journal;
- :mod:`~kiosk.delivery.status`: the published status;
- :mod:`~kiosk.delivery.client` over :mod:`~kiosk.delivery.transport`: the requests,
  each with a total deadline and a body cap, classified by :mod:`~kiosk.delivery.answers`.

This module is the loop around them. Each turn of the thread: apply new API
settings, ask the policy whether to deliver, probe or sleep, then run a round
under the outbox lock (:mod:`~kiosk.delivery.lock`) and turn its report into
the next pause and the next wait. The thread never dies while the daemon
runs: an exception anywhere in a turn (the sleep included) is logged once per
streak with its traceback, shown as the last error, and the turn is tried
again after a capped backoff. Sleeps are clamped to ``MAX_WAIT`` (the thread
re-checks, then sleeps again). :meth:`Sender.stop` abandons the request in
hand, so stopping never waits on a server.

While the clock is untrusted and TimeTrack has not vouched for it yet
(:meth:`kiosk.clock.Clock.wants_evidence`), an idle sender pings TimeTrack at
``probe_interval`` (doubling up to ``backoff_max``) so that its ``Date`` header
can: entries stamped meanwhile wait for exactly that.

    >>> sender = Sender(store, settings.api, clock=clock)       # doctest: +SKIP
    >>> sender.start(); sender.wake()       # the daemon: deliver in the background  # doctest: +SKIP
    >>> Sender(store, settings.api).flush()["delivered"]         # doctest: +SKIP
    12
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kiosk.config import ApiSettings
from kiosk.delivery.answers import SendOutcome, SendResult
from kiosk.delivery.client import TimeTrackClient
from kiosk.delivery.lock import outbox_lock
from kiosk.delivery.policy import Do, Pause, Policy, State, Timing
from kiosk.delivery.rounds import BATCH, MARK_DELAY, Courier, Progress, Report  # noqa: F401 - re-exported
from kiosk.delivery.schedule import INFLIGHT  # noqa: F401 - re-exported
from kiosk.delivery.status import StatusBoard
from kiosk.exc import DeliveryError, SenderBusy  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from kiosk.clock import Clock

log = logging.getLogger("kiosk.delivery")

IDLE_RESCAN = 30.0  # idle: look at the outbox this often anyway (entries queued elsewhere)
MAX_WAIT = IDLE_RESCAN  # the thread never sleeps longer than this in one go (it re-checks, then sleeps again)
BUSY_RETRY = 0.5  # another process holds the outbox: look again after this long
ERROR_BACKOFF = 0.1  # an unexpected error in the thread: wait this long, doubling per error in a row ...
ERROR_BACKOFF_MAX = 30.0  # ... up to this
STUCK_GRACE = 10.0  # in one request this much past api.request_deadline: the sender is stuck (watchdog)

# The states, by their old names (``kiosk status`` shows the values).
IDLE, SENDING, OFFLINE, AUTH = State.IDLE, State.SENDING, State.OFFLINE, State.AUTH
BACKING_OFF, NOT_CONFIGURED, NOT_TIMETRACK = State.BACKING_OFF, State.NOT_CONFIGURED, State.NOT_TIMETRACK


def _clamp_wait(wait: float | None) -> float:
    """A sleep the thread can always take: None is the idle rescan; NaN, infinite or
    huge values become :data:`MAX_WAIT` (``Event.wait`` raises OverflowError beyond
    ``threading.TIMEOUT_MAX``, and returns at once for NaN)."""
    if wait is None or not math.isfinite(wait):
        return IDLE_RESCAN if wait is None else MAX_WAIT
    return min(max(wait, 0.0), MAX_WAIT)


class Sender:
    """Delivers the store's outbox in a background thread (:meth:`start`) or at once (:meth:`flush`).

    ``clock``: the daemon's :class:`~kiosk.clock.Clock`, fed with TimeTrack's Date
    headers. ``settle``: seconds after an ambiguous attempt before the entry is
    looked up; default ``api.settle_seconds`` (it must exceed the server's and
    any proxy's request timeout). Tests pass a short one, and ``monotonic``/``rng``.
    """

    def __init__(self, store, api: ApiSettings, *, on_status: Callable[[dict], None] | None = None,
                 clock: Clock | None = None, monotonic: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, settle: float | None = None):
        self.store = store
        self.clock = clock
        self._api = api
        self._settle = settle
        self._monotonic = monotonic
        self.policy = Policy(Timing.from_api(api, settle), rng)
        self.board = StatusBoard(store, on_status=on_status, probe_interval=lambda: self._api.probe_interval,
                                 monotonic=monotonic)
        self.courier = Courier(store, self.policy, self.board, monotonic=monotonic)
        self._pause = Pause()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the fields below that other threads touch
        self._send_lock = threading.Lock()  # one delivery round at a time in this process
        self._thread: threading.Thread | None = None
        self._pending_api: ApiSettings | None = None
        self._client: TimeTrackClient | None = None
        self._client_error: str | None = None
        self._woken = False
        self._asleep = False
        self._clock_probe_at = 0.0
        self._clock_probes = 0

    # ------------------------------------------------------------ public API

    @property
    def on_status(self) -> Callable[[dict], None] | None:
        """Called with the status dict whenever it changes (the daemon sets it)."""
        return self.board.on_status

    @on_status.setter
    def on_status(self, callback: Callable[[dict], None] | None) -> None:
        self.board.on_status = callback

    @property
    def status(self) -> dict:
        """state, since, next_attempt, last_error, last_delivery, queued, reason, stuck_seconds
        (see :attr:`kiosk.delivery.status.StatusBoard.status`)."""
        return self.board.status

    @property
    def alive(self) -> bool:
        """The thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def asleep(self) -> bool:
        """The thread is waiting for its next turn (a :meth:`wake` ends the wait at once)."""
        return self._asleep

    def start(self) -> None:
        """Deliver in a daemon thread until :meth:`stop`."""
        if self.alive:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kiosk-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread, abandoning the request in hand; True if it ended within ``timeout``."""
        self._stop.set()
        self._wake.set()
        client = self._client
        if client is not None:
            client.abort()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
            self._thread = None
        return True

    def give_way_to(self, idle: threading.Event) -> None:
        """Let taps go first: delivery pauses between its steps while ``idle`` is clear (a tap is
        being handled; see :mod:`kiosk.delivery.rounds`)."""
        self.courier.give_way = idle

    def wake(self) -> None:
        """A new entry was queued: deliver at once (probe at once, if offline)."""
        with self._lock:
            self._woken = True
        self._wake.set()

    def update_api(self, api: ApiSettings) -> None:
        """New API settings (SIGHUP, a rotated secret): resume at once, whatever was paused."""
        with self._lock:
            self._pending_api = api
        self._wake.set()

    def healthy(self) -> bool:
        """For the watchdog: the thread (once started) lives, and is not stuck in a request
        beyond ``api.request_deadline`` (plus a grace): the deadline failed to end it."""
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return False
        busy = self.board.in_request_for()
        return busy is None or busy < self._api.request_deadline + STUCK_GRACE

    def watch(self) -> float | None:
        """From the daemon's main loop: note in the persisted status (``stuck_seconds``) a request
        that has lasted longer than ``api.read_timeout``; returns how long the request in hand has."""
        return self.board.note_stuck(self._api.read_timeout)

    def flush(self, progress: Progress | None = None, *, lock_timeout: float = 30.0) -> dict:
        """Try every sendable entry once, now, in the caller's thread, ignoring backoffs.

        ``progress(entry, result)`` is called after each entry. Stops early when the
        credentials are rejected, the API cannot be reached, is not TimeTrack, asks
        to slow down (429) or keeps failing. Returns counts ``delivered``,
        ``rejected``, ``failed``, ``remaining`` (still queued), ``held`` (clock not
        trusted yet), ``waiting`` (ambiguous entries whose lookup must wait
        until an earlier attempt has surely finished on the server), plus
        ``state`` (idle, or why it stopped) and ``error`` (the last failure's
        message, or None). Raises :class:`DeliveryError` when the API is not
        configured or unusable, :class:`SenderBusy` when another process holds
        the outbox for longer than ``lock_timeout`` seconds.
        Leaves the background thread's persisted status alone (the daemon owns it).

            >>> Sender(store, settings.api).flush()     # doctest: +SKIP
            {'delivered': 3, 'rejected': 0, 'failed': 0, 'remaining': 0, 'held': 0, 'waiting': 0,
             'state': 'idle', 'error': None}
        """
        with self._lock:
            api = self._pending_api or self._api
        if not api.configured:
            raise DeliveryError("the TimeTrack API is not configured (api.base_url, api.key, api.secret)")
        try:
            client = TimeTrackClient(api, clock=self.clock, observer=self.board)
        except ValueError as exc:
            raise DeliveryError(str(exc)) from None
        try:
            with outbox_lock(self.store.path, self._send_lock, deadline=time.monotonic() + lock_timeout):
                report = self.courier.run(client, Pause(), flush=True, progress=progress)
        finally:
            client.close()
        report.remaining = self.store.outbox_count()
        self._wake.set()  # let the thread look again
        return report.summary()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        log.debug("sender started")
        failures = 0  # turns in a row that raised (the streak ends with a whole turn, sleep included)
        announced = False  # the end of the streak was logged
        while not self._stop.is_set():
            # The whole turn, sleep included, is guarded: an error anywhere (the store,
            # a bug, a wait the platform refuses) must never end delivery while taps go on.
            try:
                wait = self._turn()
                if failures and not announced:
                    announced = True
                    log.info("sender working again after %d failed turn%s", failures, "s" if failures > 1 else "")
                if self._stop.is_set():
                    break
                self._sleep(_clamp_wait(wait))
                failures, announced = 0, False
            except Exception as exc:
                failures += 1
                self._turn_failed(exc, failures)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing the HTTP session failed", exc_info=True)
        log.debug("sender stopped")

    def _sleep(self, seconds: float) -> None:
        self._asleep = True
        try:
            if self._wake.wait(seconds):
                self._wake.clear()
        finally:
            self._asleep = False

    def _turn_failed(self, exc: Exception, failures: int) -> None:
        """Log the first error of a streak (with its traceback), record it, and back off (capped)."""
        try:
            if failures == 1:
                log.error("sender error, retrying until it goes away: %s: %s", exc.__class__.__name__, exc,
                          exc_info=exc)
            self.board.set_error(f"internal error: {exc.__class__.__name__}: {exc}")
        except Exception:  # never let the error path end the thread either
            pass
        delay = min(ERROR_BACKOFF_MAX, ERROR_BACKOFF * 2.0 ** min(failures - 1, 30))
        try:
            if self._wake.wait(delay):  # stop(), wake() or update_api() end the pause
                self._wake.clear()
        except Exception:
            time.sleep(delay)

    def _turn(self) -> float | None:
        """One turn of the state machine; returns how long to sleep (None: until woken or the rescan)."""
        self._apply_api()
        client = self._client
        if client is None:
            self.board.publish(State.NOT_CONFIGURED, error=self._client_error, problem=True,
                               reason=self._client_error)
            return None
        with self._lock:
            woken, self._woken = self._woken, False
        step = self.policy.step(self._pause, self._monotonic(), woken=woken)
        self._pause = step.pause
        if step.do is Do.SLEEP:
            return step.wait
        if step.do is Do.PROBE:
            return self._probe(client)
        try:
            with outbox_lock(self.store.path, self._send_lock, deadline=None):
                report = self.courier.run(client, self._pause, flush=False, stopping=self._stopping)
        except SenderBusy:
            return BUSY_RETRY
        return self._after_round(client, report)

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._pending_api is not None

    def _probe(self, client: TimeTrackClient) -> float | None:
        """A probe while paused: resume, stay, or change the pause."""
        was = self._pause
        result: SendResult = client.ping()
        now = self._monotonic()
        self._pause = self.policy.after_probe(was, result, now)
        if not self._pause.active:
            log.info("TimeTrack accepts the credentials again" if was.state is State.AUTH
                     else "TimeTrack answers again" if was.state is State.NOT_TIMETRACK
                     else "TimeTrack reachable again")
            return 0.0
        if self._pause.state is not was.state:
            self._announce(now)
        elif was.state is State.AUTH and result.outcome is not SendOutcome.AUTH:
            log.debug("credentials check inconclusive: %s", result.message)
        return self._pause_wait(now)

    def _after_round(self, client: TimeTrackClient, report: Report) -> float | None:
        self._pause = report.pause
        now = self._monotonic()
        if report.stop is not None:
            stop = report.stop
            if stop.state is State.STOPPED:
                return None
            self._pause, _ = self.policy.enter(self._pause, stop.state, now, stop.message, at_least=stop.at_least)
            self._announce(now)
            return self._pause_wait(now)
        if report.sent_any:
            return 0.0  # look again at once: new entries, or the next wait
        self.courier.schedule.prune(now)
        wait: float | None = None
        if report.next_due is not None:
            wait = report.next_due - now
            self.board.publish(State.BACKING_OFF, wait=wait, queued=report.queued)
        else:
            self.board.publish(State.IDLE, queued=report.queued + self.store.held_count())
        if self.clock is not None and self.clock.wants_evidence():
            until = self._clock_probe(client, now)
            wait = until if wait is None else min(wait, until)
        else:
            self._clock_probes = 0
        return wait

    def _clock_probe(self, client: TimeTrackClient, now: float) -> float:
        """Idle, with an untrusted clock that TimeTrack has not vouched for: ask for its Date."""
        if now < self._clock_probe_at:
            return self._clock_probe_at - now
        result = client.ping()
        self._clock_probes += 1
        interval = self.policy.portal_probe_interval(self._clock_probes)
        self._clock_probe_at = self._monotonic() + interval
        if result.outcome is SendOutcome.AUTH or result.not_timetrack:
            state = State.AUTH if result.outcome is SendOutcome.AUTH else State.NOT_TIMETRACK
            self._pause, _ = self.policy.enter(self._pause, state, now, result.message)
            self._announce(now)
            return self._pause_wait(now) or 0.0
        return 0.0 if self.clock is not None and not self.clock.wants_evidence() else interval

    def _announce(self, now: float) -> None:
        """Publish the pause just entered (one log line per change of state)."""
        pause = self._pause
        assert pause.state is not None
        self.board.set_error(pause.reason)
        self.board.publish(pause.state, wait=self.policy.wait_left(pause, now), error=pause.reason,
                           problem=True, reason=pause.reason)

    def _pause_wait(self, now: float) -> float | None:
        step = self.policy.step(self._pause, now)
        return step.wait if step.do is Do.SLEEP else 0.0

    def _apply_api(self) -> None:
        with self._lock:
            api, self._pending_api = self._pending_api, None
        if api is None and (self._client is not None or self._client_error is not None):
            return
        update = api is not None
        if api is not None:
            self._api = api
            self.policy.timing = Timing.from_api(api, self._settle)
        old, self._client, self._client_error = self._client, None, None
        try:
            if not self._api.configured:
                raise ValueError("the TimeTrack API is not configured (api.base_url, api.key, api.secret)")
            self._client = TimeTrackClient(self._api, clock=self.clock, observer=self.board)
        except ValueError as exc:
            self._client_error = str(exc)
        if old is not None:
            old.close()
        if update:
            # Paused or backing off: try again now. Per-entry backoffs (server errors on
            # those entries) and the settle time of ambiguous entries stay.
            log.info("API settings updated")
            self._pause = Pause()
