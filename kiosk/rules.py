"""The pure decision: (tap, stored state, now) -> outcome.

No I/O, no clock reads, no globals: the daemon gathers the facts, this module
decides, the store applies the result. That keeps every rule exhaustively
testable and keeps the tap path free of the network.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta


MIN_ENTRY_SECONDS = 0.001  # the API's precision: a shorter entry would have to <= from there


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


@dataclass(frozen=True)
class Rules:
    """Timing rules; 0 means 0 (no debounce, no minimum session)."""

    debounce_seconds: float = 3.0
    min_session_seconds: float = 60.0
    max_session_hours: float = 16.0


@dataclass(frozen=True)
class Badge:
    uid: str
    username: str
    enabled: bool = True
    label: str = ""


@dataclass(frozen=True)
class OpenClockIn:
    username: str
    since: datetime  # aware UTC
    uid: str = ""
    synced: bool = True  # stamped by a synchronised clock
    boot: str = ""  # the boot it was stamped in, when not synced


@dataclass(frozen=True)
class TapOutcome:
    kind: TapKind
    uid: str
    at: datetime
    username: str | None = None
    since: datetime | None = None  # start of the session closed (CLOCK_OUT) or kept (TOO_SOON)
    stale: OpenClockIn | None = None  # CLOCK_IN that replaced a stale open clock-in: flag it
    message: str = field(default="", compare=False)

    @property
    def duration(self) -> timedelta | None:
        if self.since is None:
            return None
        return self.at - self.since

    @property
    def changes_state(self) -> bool:
        return self.kind in (TapKind.CLOCK_IN, TapKind.CLOCK_OUT)


def decide(
    uid: str,
    badge: Badge | None,
    open_clock_in: OpenClockIn | None,
    seconds_since_last_tap: float | None,
    now: datetime,
    rules: Rules,
    *,
    comparable: bool = True,
) -> TapOutcome:
    """Decide what a tap of badge ``uid`` at ``now`` means.

    ``seconds_since_last_tap`` is the time since the same badge was last seen,
    measured on a monotonic clock by the caller (None: not seen), so that a wall
    clock jump never turns a held card into two taps.

    ``comparable`` is False when ``now`` and the open clock-in's start were not read
    on the same time basis (one before the clock synchronised, the other after, or
    another boot): their difference means nothing then, so the tap is a clock-out
    whose times are corrected (or flagged) once the clock syncs, never "too soon".
    """
    if seconds_since_last_tap is not None and 0 <= seconds_since_last_tap < rules.debounce_seconds:
        return TapOutcome(TapKind.REPEAT, uid, now, badge.username if badge else None)
    if badge is None:
        return TapOutcome(TapKind.UNKNOWN, uid, now)
    if not badge.enabled:
        return TapOutcome(TapKind.DISABLED, uid, now, badge.username)
    user = badge.username
    if open_clock_in is None:
        return TapOutcome(TapKind.CLOCK_IN, uid, now, user)
    elapsed = (now - open_clock_in.since).total_seconds()
    if not comparable:
        # An unsynchronised clock restarts from the time fake-hwclock saved, never ahead of the
        # truth: after a synced clock-in, ``elapsed`` is then a lower bound of the real one.
        if not (open_clock_in.synced and elapsed > rules.max_session_hours * 3600):
            return TapOutcome(TapKind.CLOCK_OUT, uid, now, user, since=open_clock_in.since)
    if elapsed > rules.max_session_hours * 3600:
        # Never close a forgotten clock-in with an invented time: flag it, start afresh.
        return TapOutcome(
            TapKind.CLOCK_IN, uid, now, user, stale=open_clock_in,
            message=f"open clock-in since {open_clock_in.since.isoformat()} exceeded {rules.max_session_hours:g}h",
        )
    if elapsed < MIN_ENTRY_SECONDS or elapsed < rules.min_session_seconds:
        # Also a wall clock that moved backwards: to <= from is never queued, not even at
        # the API's millisecond precision.
        return TapOutcome(TapKind.TOO_SOON, uid, now, user, since=open_clock_in.since)
    return TapOutcome(TapKind.CLOCK_OUT, uid, now, user, since=open_clock_in.since)
