"""The pure decision: (tap, stored state, now) -> outcome.

No I/O, no clock reads, no globals: the daemon gathers the facts, this module
decides, the store applies the result. That keeps every rule exhaustively
testable and keeps the tap path free of the network.

Time comes from two clocks. Within one boot, how long someone has been
clocked in is the difference of ``CLOCK_BOOTTIME`` readings, which no step of
the wall clock (NTP, chrony, an operator) can bend: "too soon", "stale" and
the session length use it. Across a reboot only the wall clock remains, and
it counts only when both ends were read from a trusted clock.

    >>> from datetime import UTC, datetime
    >>> from kiosk.model import Badge, OpenClockIn, Stamp
    >>> t0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    >>> opened = OpenClockIn("anna", t0, "04A1B2C3", boottime=100.0, boot="b1")
    >>> later = Stamp(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), True, 100.0 + 8.5 * 3600, "b1")
    >>> decide("04A1B2C3", Badge("04A1B2C3", "anna"), opened, None, later, Rules()).kind
    <TapKind.CLOCK_OUT: 'clock_out'>
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kiosk.model import Badge, OpenClockIn, Stamp

MIN_ENTRY_SECONDS = 0.001  # the API's precision: a shorter entry would have to <= from there
STEP_TOLERANCE = 2.0  # seconds: wall and boottime disagreeing by more means the wall clock stepped


class TapKind(enum.StrEnum):
    """What a tap meant. The values are stable: they appear in the audit log and --json output."""

    CLOCK_IN = "clock_in"
    CLOCK_OUT = "clock_out"
    REPEAT = "repeat"  # same badge again within the debounce window: ignored
    TOO_SOON = "too_soon"  # clock-out attempted before min_session_seconds: nothing changes
    UNKNOWN = "unknown"  # badge not provisioned
    DISABLED = "disabled"  # badge provisioned but disabled
    INVALID = "invalid"  # reader delivered something that is not a badge id
    ERROR = "error"  # the kiosk could not record the tap (store failure)
    ENROLLED = "enrolled"  # an unknown badge mapped by a waiting `kiosk enroll` (the daemon decides, not decide())


@dataclass(frozen=True)
class Rules:
    """Timing rules; 0 means 0 (no debounce, no minimum session)."""

    debounce_seconds: float = 3.0
    min_session_seconds: float = 60.0
    max_session_hours: float = 16.0


@dataclass(frozen=True)
class TapOutcome:
    """What a tap came to.

    ``since`` is the start of the open clock-in that a CLOCK_OUT closes (or a
    TOO_SOON keeps); ``start`` is the entry's ``from``: ``since``, unless the
    wall clock stepped during the session, when it is ``at`` minus the elapsed
    boottime and ``note`` says so.
    """

    kind: TapKind
    uid: str
    at: datetime
    username: str | None = None
    since: datetime | None = None
    stale: OpenClockIn | None = None  # CLOCK_IN that replaced a stale open clock-in: flag it
    start: datetime | None = None
    note: str = ""
    message: str = field(default="", compare=False)

    @property
    def duration(self) -> timedelta | None:
        begin = self.start or self.since
        return None if begin is None else self.at - begin

    @property
    def changes_state(self) -> bool:
        return self.kind in (TapKind.CLOCK_IN, TapKind.CLOCK_OUT)


@dataclass(frozen=True)
class Elapsed:
    """How long an open clock-in has run, as far as it can be known."""

    seconds: float  # boottime difference within one boot, else the wall-clock difference
    wall: float  # the wall-clock difference
    same_boot: bool  # ``seconds`` came from CLOCK_BOOTTIME
    comparable: bool  # ``seconds`` means something (same boot, or both ends from a trusted clock)

    @property
    def stepped(self) -> bool:
        """The wall clock moved (a step, a sync) during the session."""
        return self.same_boot and abs(self.wall - self.seconds) > STEP_TOLERANCE


def elapsed(opened: OpenClockIn, now: Stamp) -> Elapsed:
    """The session's length from ``opened`` to ``now`` (see the module docstring for which clock counts)."""
    wall = (now.at - opened.since).total_seconds()
    if opened.boottime is not None and now.boottime is not None and now.same_boot(opened.boot):
        return Elapsed(now.boottime - opened.boottime, wall, True, True)
    return Elapsed(wall, wall, False, opened.synced and now.synced)


def decide(
    uid: str,
    badge: Badge | None,
    open_clock_in: OpenClockIn | None,
    seconds_since_last_tap: float | None,
    now: Stamp | datetime,
    rules: Rules,
) -> TapOutcome:
    """Decide what a tap of badge ``uid`` at ``now`` means.

    ``seconds_since_last_tap`` is the time since the same badge was last seen,
    measured on a monotonic clock by the caller (None: not seen), so that a wall
    clock jump never turns a held card into two taps. ``now`` is the tap's
    :class:`~kiosk.model.Stamp` (a bare datetime counts as a trusted wall clock
    with no boottime reading).

    When the session's length cannot be known (the clock-in was stamped in
    another boot, or either end by an untrusted clock), the tap is a clock-out
    whose times are corrected (or flagged) once the clock is trusted, never
    "too soon".
    """
    stamp = now if isinstance(now, Stamp) else Stamp(now, True, None, "")  # type: ignore[arg-type]
    at = stamp.at
    if seconds_since_last_tap is not None and 0 <= seconds_since_last_tap < rules.debounce_seconds:
        return TapOutcome(TapKind.REPEAT, uid, at, badge.username if badge else None)
    if badge is None:
        return TapOutcome(TapKind.UNKNOWN, uid, at)
    if not badge.enabled:
        return TapOutcome(TapKind.DISABLED, uid, at, badge.username)
    user = badge.username
    opened = open_clock_in
    if opened is None:
        return TapOutcome(TapKind.CLOCK_IN, uid, at, user)
    span = elapsed(opened, stamp)
    limit = rules.max_session_hours * 3600
    if not span.comparable:
        # An untrusted clock restarts from the time fake-hwclock saved, never ahead of the
        # truth: after a trusted clock-in, the wall difference is then a lower bound of the real one.
        if not (opened.synced and span.seconds > limit):
            return TapOutcome(TapKind.CLOCK_OUT, uid, at, user, since=opened.since, start=opened.since)
    if span.seconds > limit:
        # Never close a forgotten clock-in with an invented time: flag it, start afresh.
        return TapOutcome(
            TapKind.CLOCK_IN, uid, at, user, stale=opened,
            message=f"open clock-in since {opened.since.isoformat()} exceeded {rules.max_session_hours:g}h",
        )
    if span.seconds < MIN_ENTRY_SECONDS or span.seconds < rules.min_session_seconds:
        # Also a wall clock that moved backwards across a reboot: to <= from is never queued,
        # not even at the API's millisecond precision.
        return TapOutcome(TapKind.TOO_SOON, uid, at, user, since=opened.since)
    if stamp.synced and span.same_boot and (span.stepped or not opened.synced):
        # The end is trusted and the length is exact: the start follows from them ("the later
        # clock reads"), whatever the wall clock said at the clock-in.
        why = (f"the wall clock moved {span.wall - span.seconds:+.1f}s during the session" if opened.synced
               else "the clock-in was stamped before the clock was trusted")
        note = f"{why}: from = to - {span.seconds:.3f}s elapsed (CLOCK_BOOTTIME)"
        start = at - timedelta(seconds=span.seconds)
        return TapOutcome(TapKind.CLOCK_OUT, uid, at, user, since=opened.since, start=start, note=note)
    return TapOutcome(TapKind.CLOCK_OUT, uid, at, user, since=opened.since, start=opened.since)
