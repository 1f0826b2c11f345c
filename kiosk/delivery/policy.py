"""The delivery policy: what to do after each answer, as pure decisions (no threads, no HTTP, no store).

The sender is a state machine. Its states (:class:`State`) are what ``kiosk
status`` shows; its global condition is a :class:`Pause` (deliver, or wait
because the network is down, the server is struggling, the credentials are
refused, or the server at ``base_url`` is not TimeTrack). :class:`Policy`
turns inputs into decisions:

- :meth:`Policy.verdict`: one entry's result -> a :class:`Verdict` (delivered,
  rejected, retry later with a backoff, or pause everything);
- :meth:`Policy.after_failure` / :meth:`Policy.after_success`: the breaker
  (``BREAKER`` failed entries in a row pause everything: the server, or the
  path to it, is in trouble, not the entries);
- :meth:`Policy.enter`, :meth:`Policy.after_probe`, :meth:`Policy.step`: the
  global pause, its probes and its end.

Why these rules:

- Backoff is exponential with full jitter, capped at ``backoff_max``; a
  Retry-After is a minimum (capped at ``max(backoff_max, RETRY_AFTER_MAX)``).
- A failure that concerns every entry (not sent for lack of a connection,
  401/403, 429, a web page instead of TimeTrack) burns no attempt and pauses
  everything; a failure of this entry counts an attempt and delays only it.
- After a failure where the request may have reached TimeTrack, the entry is
  marked ambiguous and waits at least ``settle`` seconds before the lookup
  that must precede any re-send (the server may still be storing it).
- While offline, a cheap probe every ``probe_interval`` notices the network's
  return within seconds, whatever the backoff; credentials are re-checked
  every ``AUTH_PROBE_FACTOR`` probe intervals; a portal or wrong ``base_url``
  is probed at ``probe_interval`` doubling up to ``backoff_max``, and
  delivery resumes by itself once a probe sees TimeTrack again.

    >>> policy = Policy(Timing(backoff_initial=1, backoff_max=300, probe_interval=5, settle=60))
    >>> policy.verdict(SendResult(SendOutcome.RETRY, None, "refused", connectivity=True, cause=Cause.REFUSED),
    ...                attempts=0, posted=True).pause
    <State.OFFLINE: 'offline'>
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, replace

from kiosk.delivery.answers import Cause, SendOutcome, SendResult

BREAKER = 3  # consecutive failed entries before all delivery backs off
AUTH_PROBE_FACTOR = 6  # credentials rejected: re-check every this many probe intervals
RETRY_AFTER_MAX = 3600.0  # a longer Retry-After counts as this (or backoff_max, if longer)
MIN_WAIT = 0.01  # never spin, whatever the settings say


class State(enum.StrEnum):
    """What the sender is doing, as ``kiosk status`` shows it."""

    IDLE = "idle"
    SENDING = "sending"
    BACKING_OFF = "backing off"
    OFFLINE = "offline"
    AUTH = "credentials rejected"
    NOT_TIMETRACK = "not timetrack"
    NOT_CONFIGURED = "not configured"
    STOPPED = "stopped"


#: Global pauses: states that hold back every entry.
PAUSES = frozenset({State.BACKING_OFF, State.OFFLINE, State.AUTH, State.NOT_TIMETRACK})


@dataclass(frozen=True)
class Timing:
    """The numbers the policy works with (from :class:`kiosk.config.ApiSettings`)."""

    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    probe_interval: float = 5.0
    settle: float = 60.0

    @classmethod
    def from_api(cls, api, settle: float | None = None) -> Timing:
        return cls(api.backoff_initial, api.backoff_max, api.probe_interval,
                   api.settle_seconds if settle is None else settle)


class Action(enum.StrEnum):
    DELIVERED = "delivered"  # the server confirmed it (or a lookup found it): it leaves the queue
    REJECT = "reject"  # refused for good: to the rejected list
    CHECK_BASE_URL = "check base_url"  # 404/405/410: a wrong base_url, or a refused entry? Probe first.
    RETRY = "retry"  # this entry failed: try it again after ``delay``
    PAUSE = "pause"  # a failure that concerns every entry: stop the round, enter ``pause``


@dataclass(frozen=True)
class Verdict:
    """What one result means for its entry, and perhaps for all of them."""

    action: Action
    attempt: bool = False  # counts an attempt (the entry's backoff exponent)
    ambiguous: bool = False  # mark it ambiguous now: look it up before any re-send
    record: bool = False  # keep the failure on the entry (last_error, last_attempt)
    delay: float = 0.0  # seconds before this entry may be tried again
    pause: State | None = None  # PAUSE: the state everything waits in
    at_least: float | None = None  # PAUSE: a Retry-After, the shortest the pause may be


@dataclass(frozen=True)
class Pause:
    """The global condition. ``state`` None: deliver. ``until``/``next_probe``: monotonic times.
    ``level``: global backoffs in a row (the exponent); ``streak``: failed entries in a row."""

    state: State | None = None
    until: float = 0.0
    next_probe: float = 0.0
    level: int = 0
    streak: int = 0
    streak_net: bool = True  # every failure of the streak had no HTTP answer at all
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.state is not None


class Do(enum.StrEnum):
    DELIVER = "deliver"
    PROBE = "probe"
    SLEEP = "sleep"


@dataclass(frozen=True)
class Step:
    """What the thread does next: deliver a round, send a probe, or sleep ``wait`` seconds."""

    do: Do
    wait: float = 0.0
    pause: Pause = Pause()  # the pause after this step (a finished wait clears it)


class Policy:
    """Pure decisions over :class:`Timing`; ``rng`` draws the jitter (tests pass a fixed one)."""

    def __init__(self, timing: Timing, rng: random.Random | None = None):
        self.timing = timing
        self.rng = rng if rng is not None else random.Random()

    # ------------------------------------------------------------ waits

    def backoff(self, n: int) -> float:
        """Full jitter: uniform(0, min(backoff_max, backoff_initial * 2**(n-1))), never below MIN_WAIT."""
        t = self.timing
        cap = min(t.backoff_max, t.backoff_initial * (2.0 ** min(max(n - 1, 0), 60)))
        return max(MIN_WAIT, self.rng.uniform(0.0, max(cap, 0.0)))

    def auth_probe_interval(self) -> float:
        probe = self.timing.probe_interval
        return max(MIN_WAIT, probe * AUTH_PROBE_FACTOR if probe > 0 else self.timing.backoff_max)

    def portal_probe_interval(self, level: int) -> float:
        """probe_interval, doubling with each probe that still sees no TimeTrack, up to backoff_max."""
        t = self.timing
        base = t.probe_interval if t.probe_interval > 0 else t.backoff_initial
        return max(MIN_WAIT, min(max(t.backoff_max, base), base * 2.0 ** min(max(level - 1, 0), 30)))

    def retry_after(self, seconds: float) -> float:
        return min(seconds, max(self.timing.backoff_max, RETRY_AFTER_MAX))

    # ------------------------------------------------------------ one entry

    def verdict(self, result: SendResult, *, attempts: int, posted: bool) -> Verdict:
        """What ``result`` means for its entry. ``posted``: it answers a POST (else a lookup)."""
        if result.ok:
            return Verdict(Action.DELIVERED)
        ambiguous = posted and result.maybe_sent
        if result.outcome is SendOutcome.REJECTED:
            if posted and result.status in (404, 405, 410):
                return Verdict(Action.CHECK_BASE_URL)
            return Verdict(Action.REJECT)
        if result.outcome is SendOutcome.AUTH:
            return Verdict(Action.PAUSE, pause=State.AUTH)
        if result.cause is Cause.ABORTED:  # the sender is stopping: no attempt burned
            return Verdict(Action.PAUSE, ambiguous=ambiguous, record=ambiguous, pause=State.STOPPED)
        if result.not_timetrack:
            return Verdict(Action.PAUSE, ambiguous=ambiguous, record=True, pause=State.NOT_TIMETRACK)
        if result.outcome is SendOutcome.RETRY and result.connectivity:
            return Verdict(Action.PAUSE, pause=State.OFFLINE)  # not sent, and nothing else will get through
        if result.retry_after is not None or result.cause is Cause.RATE_LIMITED:
            # About the server, not this entry: no attempt burned; everything waits at least that long.
            return Verdict(Action.PAUSE, ambiguous=ambiguous, record=True, pause=State.BACKING_OFF,
                           at_least=self.retry_after(result.retry_after or 0.0))
        n = attempts + 1
        delay = self.backoff(n)
        if ambiguous:
            delay = max(delay, self.timing.settle)
        return Verdict(Action.RETRY, attempt=True, ambiguous=ambiguous, record=True, delay=delay)

    def after_success(self, pause: Pause) -> Pause:
        return replace(pause, streak=0, streak_net=True, level=0)

    def after_failure(self, pause: Pause, result: SendResult) -> tuple[Pause, State | None]:
        """Count a failed entry; the second value is the state to pause in when the breaker trips."""
        streak, net = pause.streak + 1, pause.streak_net and result.connectivity
        if streak >= BREAKER:
            return replace(pause, streak=0, streak_net=True), State.OFFLINE if net else State.BACKING_OFF
        return replace(pause, streak=streak, streak_net=net), None

    # ------------------------------------------------------------ everything

    def enter(self, pause: Pause, state: State, now: float, reason: str = "", *,
              at_least: float | None = None) -> tuple[Pause, float | None]:
        """Pause everything in ``state``; returns the pause and the seconds until the next try (None: a probe decides)."""
        t = self.timing
        base = replace(pause, state=state, reason=reason, streak=0, streak_net=True)
        if state is State.AUTH:
            nxt = now + self.auth_probe_interval()
            return replace(base, until=math.inf, next_probe=nxt), nxt - now
        level = pause.level + 1
        if state is State.NOT_TIMETRACK:
            nxt = now + self.portal_probe_interval(level)
            return replace(base, level=level, until=math.inf, next_probe=nxt), nxt - now
        wait = self.backoff(level)
        if at_least is not None:
            wait = max(wait, at_least)
        until = now + wait
        probe = now + t.probe_interval if state is State.OFFLINE and t.probe_interval > 0 else until
        return replace(base, level=level, until=until, next_probe=probe), wait

    def after_probe(self, pause: Pause, result: SendResult, now: float) -> Pause:
        """A probe's answer: TimeTrack again (resume), still paused (next probe), or another pause."""
        if result.ok:
            return Pause()
        if result.outcome is SendOutcome.AUTH:
            return replace(self.enter(pause, State.AUTH, now, result.message)[0], level=pause.level)
        if result.not_timetrack:
            return self.enter(pause, State.NOT_TIMETRACK, now, result.message)[0]
        if pause.state is State.AUTH:  # inconclusive: keep waiting for the credentials
            return replace(pause, next_probe=now + self.auth_probe_interval())
        if pause.state is State.OFFLINE:
            probe = self.timing.probe_interval
            return replace(pause, next_probe=now + probe if probe > 0 else pause.until)
        # Was a portal, now something else: no network at all, or TimeTrack failing.
        return self.enter(pause, State.OFFLINE if result.connectivity else State.BACKING_OFF, now,
                          result.message)[0]

    def step(self, pause: Pause, now: float, *, woken: bool = False) -> Step:
        """Deliver, probe, or sleep. A wait that ran out clears the pause (keeping its level, so
        that the next failure backs off longer); ``woken`` (a new entry) probes at once while offline."""
        state = pause.state
        if state is None:
            return Step(Do.DELIVER, 0.0, pause)
        if state in (State.AUTH, State.NOT_TIMETRACK):
            if now >= pause.next_probe:
                return Step(Do.PROBE, 0.0, pause)
            return Step(Do.SLEEP, pause.next_probe - now, pause)
        if now >= pause.until:
            return Step(Do.DELIVER, 0.0, Pause(level=pause.level))
        probe = self.timing.probe_interval
        if state is State.OFFLINE and probe > 0:
            if woken or now >= pause.next_probe:
                return Step(Do.PROBE, 0.0, pause)
            return Step(Do.SLEEP, min(pause.next_probe, pause.until) - now, pause)
        return Step(Do.SLEEP, pause.until - now, pause)

    def wait_left(self, pause: Pause, now: float) -> float | None:
        """Seconds until the next try (for the status's ``next_attempt``; None: when a probe says so)."""
        if pause.state is None:
            return None
        target = pause.next_probe if pause.state in (State.AUTH, State.NOT_TIMETRACK) else pause.until
        return max(0.0, target - now) if math.isfinite(target) else None
