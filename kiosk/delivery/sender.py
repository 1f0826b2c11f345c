"""The outbox worker: delivers queued attendance entries to TimeTrack.

Guarantees, and how they are kept:

- Nothing lost: an entry leaves the outbox only through ``mark_delivered`` (the
  server confirmed it, or a lookup found it there) or ``reject`` (the server
  refused it for good; it waits in the rejected list for an administrator).
- Nothing sent twice: before a batch of POSTs, the batch's ids are written
  durably to the store (status record ``sender_inflight``). After a crash,
  whoever sends next marks those entries ``ambiguous``. An ambiguous entry
  (also: read timeout, reset, a 5xx that may follow the insert) is looked up
  with the filtered list before any re-send, and never re-sent while the lookup
  fails. Thanks to that record the "delivered" marks of a batch may be
  committed together a moment later. Only one sender delivers at a time: a
  lock file next to the store serialises the daemon's thread and a
  ``kiosk queue flush`` in another process.
- One bad entry never blocks the others: each entry has its own backoff
  (``attempts``, ``next_attempt``); a permanent 4xx moves it to the rejected list.
- Backoff is exponential with full jitter, capped at ``backoff_max``; a
  Retry-After is a minimum. While the network is down a cheap probe (``ping``)
  runs every ``probe_interval``, so delivery resumes within seconds of the
  network coming back. 401/403 pause everything (no attempt burned) until
  ``update_api`` or a probe finds the credentials accepted again.
- The secret never reaches a log line, the store or the status.
- The thread never dies while the daemon runs: an exception anywhere in a turn
  (the sleep included) is logged once per streak with its traceback, shown as
  the last error, and the turn is tried again after a capped backoff. Sleeps are
  clamped to ``MAX_WAIT`` (the thread re-checks and sleeps again), and a
  Retry-After counts for at most ``max(backoff_max, RETRY_AFTER_MAX)``.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from kiosk import clock as clk
from kiosk.config import ApiSettings
from kiosk.exc import DeliveryError, SenderBusy
from kiosk.model import OutboxEntry
from kiosk.delivery.client import LookupFailed, SendOutcome, SendResult, TimeTrackClient

log = logging.getLogger("kiosk.delivery")

INFLIGHT = "sender_inflight"  # status record: ids whose POST may be under way
BATCH = 64  # entries per in-flight record
MARK_DELAY = 0.25  # seconds a confirmed delivery may wait to be committed with others
BREAKER = 3  # consecutive failed entries before all delivery backs off
AUTH_PROBE_FACTOR = 6  # credentials rejected: re-check every this many probe intervals
IDLE_RESCAN = 30.0  # idle: look at the outbox this often anyway (entries queued elsewhere)
MAX_WAIT = IDLE_RESCAN  # the thread never sleeps longer than this in one go (it re-checks, then sleeps again)
BUSY_RETRY = 0.5  # another process holds the outbox: look again after this long
MIN_WAIT = 0.01  # never spin, whatever the settings say
ERROR_BACKOFF = 0.1  # an unexpected error in the thread: wait this long, doubling per error in a row ...
ERROR_BACKOFF_MAX = 30.0  # ... up to this
RETRY_AFTER_MAX = 3600.0  # a longer Retry-After counts as this (or backoff_max, if longer)
WALL_MAX = 10 * 365 * 86400.0  # the furthest ahead a wall-clock time in the status may be

IDLE = "idle"
SENDING = "sending"
OFFLINE = "offline"
AUTH = "credentials rejected"
BACKING_OFF = "backing off"
NOT_CONFIGURED = "not configured"

Progress = Callable[[OutboxEntry, SendResult], None]


def _wall(seconds_from_now: float) -> datetime:
    """Wall-clock time ``seconds_from_now`` ahead (for people and other processes)."""
    seconds = min(max(seconds_from_now, 0.0), WALL_MAX) if math.isfinite(seconds_from_now) else WALL_MAX
    return clk.utcnow() + timedelta(seconds=seconds)


def _clamp_wait(wait: float | None) -> float:
    """A sleep the thread can always take: None is the idle rescan; NaN, infinite or
    huge values become :data:`MAX_WAIT` (``Event.wait`` raises OverflowError beyond
    ``threading.TIMEOUT_MAX``, and returns at once for NaN)."""
    if wait is None or not math.isfinite(wait):
        return IDLE_RESCAN if wait is None else MAX_WAIT
    return min(max(wait, 0.0), MAX_WAIT)


class Sender:
    """Delivers the store's outbox in a background thread (:meth:`start`) or at once (:meth:`flush`).

    ``settle``: seconds after an ambiguous attempt before the entry is looked up
    (see :meth:`_settle_time`); default ``api.settle_seconds``. Tests pass a short one.
    """

    def __init__(self, store, api: ApiSettings, *, on_status: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 settle: float | None = None):
        self.store = store
        self._settle = settle
        self._api = api
        self.on_status = on_status  # called with the status dict whenever it changes
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()  # the state below
        self._send_lock = threading.Lock()  # one delivery round at a time in this process
        self._thread: threading.Thread | None = None
        self._pending_api: ApiSettings | None = None
        self._client: TimeTrackClient | None = None
        self._client_error: str | None = None
        self._woken = False
        # Global state: None (deliver), OFFLINE, BACKING_OFF (wait until _until), AUTH (paused).
        self._mode: str | None = None
        self._until = 0.0
        self._next_probe = 0.0
        self._global_n = 0  # consecutive global backoffs (the exponent)
        self._streak = 0  # consecutive failed entries
        self._streak_net = True  # ... all of them for lack of an answer
        self._due: dict[int, float] = {}  # entry id -> monotonic time it may be tried again
        self._marks: list[tuple[int, Any]] = []  # confirmed, not yet committed
        self._marks_since = 0.0
        self._status: dict[str, Any] = {"state": IDLE, "since": clk.to_iso(clk.utcnow()), "next_attempt": None,
                                        "last_error": None, "last_delivery": None, "queued": 0}
        self._published: tuple | None = None
        self._problem = False  # the published state is offline / credentials / global backoff
        self._error_persisted: str | None = None

    # ------------------------------------------------------------ public API

    def start(self) -> None:
        """Deliver in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kiosk-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread after the request in hand; True if it ended within ``timeout``."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
            self._thread = None
        return True

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

    @property
    def status(self) -> dict:
        """state, since, next_attempt (ISO UTC or None), last_error ({at, message} or None),
        last_delivery (ISO UTC or None), queued (outbox size when the state last changed)."""
        with self._lock:
            return dict(self._status)

    def flush(self, progress: Progress | None = None, *, lock_timeout: float = 30.0) -> dict:
        """Try every sendable entry once, now, in the caller's thread, ignoring backoffs.

        ``progress(entry, result)`` is called after each entry. Stops early when the
        credentials are rejected, the API cannot be reached, the server asks to
        slow down (429) or keeps failing. Returns counts ``delivered``,
        ``rejected``, ``failed``, ``remaining`` (still queued), ``held`` (clock not
        synchronised yet), ``waiting`` (ambiguous entries whose lookup must wait
        until an earlier attempt has surely finished on the server), plus
        ``state`` (idle, or why it stopped) and ``error`` (the last failure's
        message, or None). Raises :class:`DeliveryError` when the API is not
        configured or unusable, :class:`SenderBusy` when another process holds
        the outbox for longer than ``lock_timeout`` seconds.
        Leaves the background thread's persisted status alone (the daemon owns it).
        """
        with self._lock:
            api = self._pending_api or self._api
        if not api.configured:
            raise DeliveryError("the TimeTrack API is not configured (api.base_url, api.key, api.secret)")
        try:
            client = TimeTrackClient(api)
        except ValueError as exc:
            raise DeliveryError(str(exc)) from None
        summary: dict[str, Any] = {"delivered": 0, "rejected": 0, "failed": 0, "remaining": 0, "held": 0,
                                   "waiting": 0, "state": IDLE, "error": None}
        try:
            with self._outbox_lock(deadline=time.monotonic() + lock_timeout):
                self._round(client, summary=summary, progress=progress)
        finally:
            client.close()
        summary["remaining"] = self.store.outbox_count()
        self._wake.set()  # let the thread look again
        return summary

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        log.debug("sender started")
        failures = 0  # turns in a row that raised (the streak ends with a whole turn, sleep included)
        announced = False  # the end of the streak was logged
        while not self._stop.is_set():
            # The whole turn, sleep included, is guarded: an error anywhere (the store,
            # a bug, a wait the platform refuses) must never end delivery while taps go on.
            try:
                wait = self._step()
                if failures and not announced:
                    announced = True
                    log.info("sender working again after %d failed turn%s", failures, "s" if failures > 1 else "")
                if self._stop.is_set():
                    break
                if self._wake.wait(_clamp_wait(wait)):
                    self._wake.clear()
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

    def _turn_failed(self, exc: Exception, failures: int) -> None:
        """Log the first error of a streak (with its traceback), record it, and back off (capped)."""
        try:
            if failures == 1:
                log.error("sender error, retrying until it goes away: %s: %s", exc.__class__.__name__, exc,
                          exc_info=exc)
            self._set_error(f"internal error: {exc.__class__.__name__}: {exc}")
        except Exception:  # never let the error path end the thread either
            pass
        delay = min(ERROR_BACKOFF_MAX, ERROR_BACKOFF * 2.0 ** min(failures - 1, 30))
        try:
            if self._wake.wait(delay):  # stop(), wake() or update_api() end the pause
                self._wake.clear()
        except Exception:
            time.sleep(delay)

    def _step(self) -> float | None:
        """One turn of the state machine; returns how long to sleep (None: until woken)."""
        self._apply_api()
        client = self._client
        if client is None:
            self._publish(NOT_CONFIGURED, error=self._client_error, problem=True)
            return None
        now = self._clock()
        with self._lock:
            woken, self._woken = self._woken, False
            mode = self._mode
        if mode == AUTH:
            if now < self._next_probe:
                return self._next_probe - now
            result = client.ping()
            if not result.ok:
                if result.outcome is not SendOutcome.AUTH:
                    log.debug("credentials check inconclusive: %s", result.message)
                self._next_probe = self._clock() + self._auth_probe_interval()
                return self._next_probe - self._clock()
            log.info("TimeTrack accepts the credentials again")
            self._clear_global(reset=True)
        elif mode in (OFFLINE, BACKING_OFF) and now < self._until:
            probe = self._api.probe_interval
            if mode == BACKING_OFF or probe <= 0:
                return self._until - now
            if not woken and now < self._next_probe:
                return min(self._next_probe, self._until) - now
            result = client.ping()
            if result.outcome is SendOutcome.AUTH:
                self._enter_auth(result)
                return self._next_probe - self._clock()
            if not result.ok:
                self._next_probe = self._clock() + probe
                return min(self._next_probe, self._until) - self._clock()
            log.info("TimeTrack reachable again")
            self._clear_global(reset=True)
        elif mode in (OFFLINE, BACKING_OFF):
            self._clear_global(reset=False)  # the wait is over: try again (another failure escalates)
        try:
            with self._outbox_lock(deadline=None):
                return self._round(client)
        except SenderBusy:
            return BUSY_RETRY

    def _apply_api(self) -> None:
        with self._lock:
            api, self._pending_api = self._pending_api, None
            if api is None and (self._client is not None or self._client_error is not None):
                return
            update = api is not None
            if update:
                self._api = api
            old, self._client, self._client_error = self._client, None, None
            try:
                if not self._api.configured:
                    raise ValueError("the TimeTrack API is not configured (api.base_url, api.key, api.secret)")
                self._client = TimeTrackClient(self._api)
            except ValueError as exc:
                self._client_error = str(exc)
            if old is not None:
                old.close()
            if update:
                # Paused or backing off: try again now. Per-entry backoffs (server errors on
                # those entries) and the settle time of ambiguous entries stay.
                log.info("API settings updated")
                self._mode = None
                self._global_n = self._streak = 0
                self._streak_net = True

    # ------------------------------------------------------------ one round

    def _round(self, client: TimeTrackClient, *, summary: dict | None = None,
               progress: Progress | None = None) -> float | None:
        """Deliver the due entries, oldest first (all sendable ones when flushing), a page at a time.

        The caller holds the outbox lock. Returns the thread's next wait. Memory and
        each store read stay bounded by a page, whatever the size of the queue.
        """
        flush = summary is not None
        self._recover_inflight()
        now = self._clock()
        queued = 0
        next_due: float | None = None
        sent_any = stop = False
        after = 0
        try:
            while not stop:
                page = self.store.queued(after=after, limit=BATCH)
                if not page:
                    break
                after = page[-1].id
                queued += len(page)
                if flush:
                    due = [e for e in page if self._settled(e)]
                    summary["waiting"] += len(page) - len(due)
                else:
                    due = []
                    for entry in page:
                        at = self._due_at(entry, now)
                        if at <= now:
                            due.append(entry)
                        else:
                            next_due = at if next_due is None else min(next_due, at)
                if not due:
                    continue
                if not flush and not sent_any and not self._problem:  # after trouble, "sending" waits for a success
                    self._publish(SENDING)
                sent_any = True
                stop = self._send_batch(client, due, summary, progress)
            self._commit_marks()
        finally:
            # A failure mid-round (a store error) leaves the in-flight record: every entry of it is
            # looked up before any re-send; confirmed deliveries are kept if possible.
            try:
                self._commit_marks()
            except Exception:
                log.debug("could not save confirmed deliveries yet; kept for the next round")
        if flush:
            summary["held"] = self.store.held_count()
            return None
        if sent_any:
            return 0.0  # look again at once: new entries, or the next wait
        with self._lock:
            self._due = {i: t for i, t in self._due.items() if t > now}  # forget entries that left
        if next_due is not None:
            wait = next_due - now
            self._publish(BACKING_OFF, wait=wait, queued=queued)
            return wait
        self._publish(IDLE, queued=queued + self.store.held_count())
        return None

    def _send_batch(self, client: TimeTrackClient, batch: list[OutboxEntry], summary: dict | None,
                    progress: Progress | None) -> bool:
        """POST (or look up) each entry of ``batch``; True when the round must stop."""
        flush = summary is not None
        # Durable before any POST of the batch: if we die from here on, they are "ambiguous".
        pending = [i for i, _ in self._marks]
        self.store.set_status(INFLIGHT, {"ids": pending + [e.id for e in batch],
                                         "pid": os.getpid(), "at": clk.to_iso(clk.utcnow())})
        stop = False
        for entry in batch:
            if not flush and (self._stop.is_set() or self._pending_api is not None):
                stop = True
                break
            result = self._deliver(client, entry)
            stop = self._handle(client, entry, result, summary)
            if progress is not None:
                progress(entry, result)
            if self._marks and self._clock() - self._marks_since >= MARK_DELAY:
                self._commit_marks()
            if stop:
                break
        self._commit_marks()
        self.store.set_status(INFLIGHT, {"ids": []})
        return stop

    def _due_at(self, entry: OutboxEntry, now: float) -> float:
        """When ``entry`` may be tried (monotonic). Only entries with a wait are remembered."""
        with self._lock:
            due = self._due.get(entry.id)
        if due is not None:
            return due
        due = now
        if entry.next_attempt is not None:  # a backoff from before a restart, if still plausible
            left = (entry.next_attempt - clk.utcnow()).total_seconds()
            if left > 0:
                due = now + min(left, max(self._api.backoff_max, self._settle_time()))
        due = max(due, now + self._settle_left(entry))
        if due > now:
            with self._lock:
                self._due[entry.id] = due
        return due

    def _settle_time(self) -> float:
        """How long an ambiguous attempt may still be running on the server.

        A lookup that comes too early may miss an entry the server is still
        storing (the client gave up at its read timeout, the server did not),
        and the re-send would duplicate it. It is ``api.settle_seconds``
        (default 60), or the ``settle`` given to the constructor: it must exceed
        the server's (and any proxy's) request timeout, the longest a request
        can go on there after the kiosk gave up on it.
        """
        if self._settle is not None:
            return self._settle
        return self._api.settle_seconds

    def _settle_left(self, entry: OutboxEntry) -> float:
        """Seconds until an ambiguous entry may be looked up (0: now)."""
        if not entry.ambiguous or entry.ambiguous_at is None:
            return 0.0
        age = (clk.utcnow() - entry.ambiguous_at).total_seconds()
        settle = self._settle_time()
        return settle - age if 0 <= age < settle else 0.0  # a clock that jumped back holds nothing forever

    def _settled(self, entry: OutboxEntry) -> bool:
        return self._settle_left(entry) <= 0

    def _recover_inflight(self) -> None:
        """Entries whose POST may have been under way when a sender died: look them up first."""
        record = self.store.status_value(INFLIGHT) or {}
        ids = record.get("ids") or []
        if not ids:
            return
        marked = 0
        settle = self._settle_time()
        for entry_id in ids:
            entry = self.store.outbox_entry(entry_id)
            if entry is not None:
                # Its POST may even be running still: look it up only after the settle time.
                self.store.update_entry(entry_id, ambiguous=True, ambiguous_at=clk.utcnow(),
                                        next_attempt=_wall(settle))
                with self._lock:
                    self._due[entry_id] = self._clock() + settle
                marked += 1
        if marked:
            log.warning("%d entries may have been sent when the previous sender stopped: "
                        "each is looked up before it is sent again", marked)
        self.store.set_status(INFLIGHT, {"ids": []})

    def _deliver(self, client: TimeTrackClient, entry: OutboxEntry) -> SendResult:
        try:
            if not entry.username or entry.end <= entry.start:
                return SendResult(SendOutcome.REJECTED, None,
                                  "local check: no username, or the entry ends before it starts")
        except (AttributeError, TypeError, ValueError) as exc:
            return SendResult(SendOutcome.REJECTED, None,
                              f"local check: malformed entry ({exc.__class__.__name__}: {exc})")
        if entry.ambiguous:
            try:
                server_id = client.find(entry)
            except LookupFailed as exc:
                return exc.result  # unknown whether it exists: never POST now
            if server_id is not None:
                log.info("entry %s is already in TimeTrack (ID %s): not sent again", entry.id, server_id)
                return SendResult(SendOutcome.DELIVERED, None, "found by lookup", server_id=server_id)
        return client.create(entry)

    # ------------------------------------------------------------ outcomes

    def _handle(self, client: TimeTrackClient, entry: OutboxEntry, result: SendResult,
                summary: dict | None) -> bool:
        """Record one outcome; True when the round must stop."""
        flush = summary is not None
        entry_id = entry.id
        outcome = result.outcome
        if result.ok:
            if not self._marks:
                self._marks_since = self._clock()
            self._marks.append((entry_id, result.server_id))
            self._success(entry_id, summary, "delivered")
            log.debug("entry %s delivered (ID %s)", entry_id, result.server_id)
            return False
        if flush:
            summary["error"] = result.message
        if outcome is SendOutcome.REJECTED:
            if result.status in (404, 405, 410) and not client.ping().ok:
                # The collection itself is missing: a wrong base_url, not a bad entry.
                message = f"{result.message}; the entry list is unreachable too: check api.base_url"
                return self._stop_all(BACKING_OFF, message, summary)
            self._commit_marks()
            self.store.reject(entry_id, result.status, result.message)
            log.warning("entry %s (%s) rejected by TimeTrack: %s", entry_id, entry.username, result.message)
            self._success(entry_id, summary, "rejected")
            return False
        if outcome is SendOutcome.AUTH:
            return self._stop_all(AUTH, result.message, summary, result=result)
        if outcome is SendOutcome.RETRY and result.connectivity:
            # Not sent, and nothing else will get through either: no attempt burned.
            return self._stop_all(OFFLINE, result.message, summary)
        # A server-side failure for this entry: 5xx, 408, 429, or a lost answer.
        changes: dict[str, Any] = {"last_error": result.message, "last_attempt": clk.utcnow()}
        throttled = result.retry_after is not None
        delay = 0.0
        if not throttled:  # a Retry-After is about the server, not this entry: no attempt burned
            changes["attempts"] = int(entry.attempts or 0) + 1
            delay = self._backoff(changes["attempts"])
        if outcome is SendOutcome.AMBIGUOUS:
            changes.update(ambiguous=True, ambiguous_at=changes["last_attempt"])
            delay = max(delay, self._settle_time())
        if delay > 0:
            changes["next_attempt"] = _wall(delay)
            with self._lock:
                self._due[entry_id] = self._clock() + delay
        self.store.update_entry(entry_id, failed=True, **changes)
        log.debug("entry %s not delivered: %s", entry_id, result.message)
        if flush:
            summary["failed"] += 1
        if throttled:  # 429 / 503 with Retry-After: everything waits at least that long
            return self._stop_all(BACKING_OFF, result.message, summary, at_least=result.retry_after, counted=True)
        with self._lock:
            self._streak += 1
            self._streak_net = self._streak_net and result.connectivity
            tripped, net = self._streak >= BREAKER, self._streak_net
        if tripped:  # several entries in a row: the server (or the path to it) is in trouble
            state = OFFLINE if net else BACKING_OFF
            return self._stop_all(state, result.message, summary, counted=True)
        if not flush:
            self._set_error(result.message)
        return False

    def _success(self, entry_id: int, summary: dict | None, kind: str) -> None:
        with self._lock:
            self._due.pop(entry_id, None)
            self._streak, self._streak_net, self._global_n = 0, True, 0
            if kind == "delivered":
                self._status["last_delivery"] = clk.to_iso(clk.utcnow())
        if summary is not None:
            summary[kind] += 1
        elif self._status["state"] != SENDING:
            self._publish(SENDING)

    def _stop_all(self, state: str, message: str, summary: dict | None, *, result: SendResult | None = None,
                  at_least: float | None = None, counted: bool = False) -> bool:
        """A failure that concerns every entry: stop the round and enter ``state``."""
        if summary is not None:
            if not counted:
                summary["failed"] += 1
            summary["state"] = state
            summary["error"] = message
            with self._lock:
                self._streak, self._streak_net = 0, True
            return True
        if state == AUTH:
            self._enter_auth(result or SendResult(SendOutcome.AUTH, None, message))
        elif state == OFFLINE:
            self._enter_offline(message)
        else:
            self._enter_backoff(message, at_least=at_least)
        return True

    def _commit_marks(self) -> None:
        marks, self._marks = self._marks, []
        if not marks:
            return
        try:
            self.store.mark_delivered_many(marks)  # one transaction (one fsync) for the lot
        except Exception:
            self._marks = marks + self._marks  # confirmed by the server: never forget them
            raise

    # ------------------------------------------------------------ global states

    def _backoff(self, n: int) -> float:
        """Full jitter: uniform(0, min(backoff_max, backoff_initial * 2**(n-1)))."""
        api = self._api
        cap = min(api.backoff_max, api.backoff_initial * (2.0 ** min(max(n - 1, 0), 60)))
        return max(MIN_WAIT, self._rng.uniform(0.0, max(cap, 0.0)))

    def _auth_probe_interval(self) -> float:
        probe = self._api.probe_interval
        return max(MIN_WAIT, probe * AUTH_PROBE_FACTOR if probe > 0 else self._api.backoff_max)

    def _enter_auth(self, result: SendResult) -> None:
        with self._lock:
            self._mode = AUTH
            self._next_probe = self._clock() + self._auth_probe_interval()
            self._streak, self._streak_net = 0, True
        self._set_error(result.message)
        self._publish(AUTH, error=result.message, problem=True)

    def _enter_offline(self, message: str) -> None:
        now = self._clock()
        with self._lock:
            self._mode = OFFLINE
            self._global_n += 1
            self._streak, self._streak_net = 0, True
            wait = self._backoff(self._global_n)
            self._until = now + wait
            probe = self._api.probe_interval
            self._next_probe = now + probe if probe > 0 else self._until
        self._set_error(message)
        self._publish(OFFLINE, wait=wait, error=message, problem=True)

    def _enter_backoff(self, message: str, *, at_least: float | None = None) -> None:
        now = self._clock()
        with self._lock:
            self._mode = BACKING_OFF
            self._global_n += 1
            self._streak, self._streak_net = 0, True
            wait = self._backoff(self._global_n)
            if at_least is not None:  # a Retry-After: a minimum, within reason
                wait = max(wait, min(at_least, max(self._api.backoff_max, RETRY_AFTER_MAX)))
            self._until = now + wait
        self._set_error(message)
        self._publish(BACKING_OFF, wait=wait, error=message, problem=True)

    def _clear_global(self, *, reset: bool) -> None:
        with self._lock:
            self._mode = None
            if reset:
                self._global_n = 0
            self._streak, self._streak_net = 0, True

    # ------------------------------------------------------------ status

    def _set_error(self, message: str | None) -> None:
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

    def _publish(self, state: str, *, wait: float | None = None, error: str | None = None,
                 queued: int | None = None, problem: bool = False) -> None:
        """Update the status; persist it and call on_status only when it changed."""
        if queued is None:
            try:
                queued = self.store.outbox_count()
            except Exception:
                queued = self._status.get("queued", 0)
        next_attempt = clk.to_iso(_wall(wait)) if wait is not None else None
        with self._lock:
            was_problem, self._problem = self._problem, problem
            previous = self._status["state"]
            key = (state, next_attempt[:19] if next_attempt else None, error, queued > 0)
            if key == self._published:
                return
            self._published = key
            if state != previous:
                self._status["since"] = clk.to_iso(clk.utcnow())
            self._status.update(state=state, next_attempt=next_attempt, queued=queued)
            status = dict(self._status)
        if state != previous or problem != was_problem:
            self._log_state(state, problem, was_problem, wait, error or "")
        try:
            self.store.set_status("sender", status)
        except Exception:
            log.debug("cannot record the sender status", exc_info=True)
        if self.on_status is not None:
            try:
                self.on_status(status)
            except Exception:
                log.exception("on_status callback failed")

    def _log_state(self, state: str, problem: bool, was_problem: bool, wait: float | None, message: str) -> None:
        """One line per change of state: never one per retry or per probe."""
        if state == OFFLINE:
            probe = self._api.probe_interval
            log.warning("offline (%s); %s", message,
                        f"probing every {probe:g}s" if probe > 0 else f"retrying in {wait or 0:.1f}s")
        elif state == AUTH:
            log.error("credentials rejected by TimeTrack (%s): delivery paused until the secret is updated",
                      message)
        elif state == BACKING_OFF and problem:
            log.warning("backing off %.1fs: %s", wait or 0.0, message)
        elif state == NOT_CONFIGURED:
            log.error("not delivering: %s", message)
        elif was_problem and not problem:
            log.info("delivery resumed")
        else:
            log.debug("sender %s", state)

    # ------------------------------------------------------------ locking

    @contextmanager
    def _outbox_lock(self, *, deadline: float | None) -> Iterator[None]:
        """This process's round lock, plus an flock on ``<store>.sender-lock`` for other processes.

        ``deadline`` None: try once, raise :class:`SenderBusy` if taken; else wait until then.
        """
        while not self._send_lock.acquire(timeout=0.05):
            if deadline is None or time.monotonic() >= deadline:
                raise SenderBusy("another delivery is under way in this process")
        fd = -1
        try:
            fd = os.open(f"{self.store.path}.sender-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is None or time.monotonic() >= deadline:
                        raise SenderBusy("another process (the daemon?) is delivering the outbox") from None
                    time.sleep(0.05)
            yield
        finally:
            if fd >= 0:
                os.close(fd)  # releases the flock
            self._send_lock.release()
