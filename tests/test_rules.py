"""The decision rules, exhaustively: every outcome and every boundary."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from kiosk.model import Badge, OpenClockIn, Stamp
from kiosk.rules import TapKind, Rules, decide, elapsed

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
UNTRUSTED_T0 = Stamp(T0, False, 50.0, "another-boot")  # a tap whose time cannot be compared with a clock-in
RULES = Rules(debounce_seconds=3, min_session_seconds=60, max_session_hours=16)
ANNA = Badge("04A1B2C3", "anna")


def open_at(delta: timedelta, user="anna") -> OpenClockIn:
    return OpenClockIn(user, T0 - delta, "04A1B2C3")


def test_unknown_badge():
    out = decide("DEADBEEF", None, None, None, T0, RULES)
    assert out.kind is TapKind.UNKNOWN and out.username is None and not out.changes_state


def test_disabled_badge_changes_nothing_even_with_open_clock_in():
    out = decide(ANNA.uid, Badge(ANNA.uid, "anna", enabled=False), open_at(timedelta(hours=2)), None, T0, RULES)
    assert out.kind is TapKind.DISABLED and not out.changes_state


def test_first_tap_clocks_in():
    out = decide(ANNA.uid, ANNA, None, None, T0, RULES)
    assert out.kind is TapKind.CLOCK_IN and out.username == "anna" and out.at == T0 and out.stale is None


def test_clock_out_carries_session_start():
    out = decide(ANNA.uid, ANNA, open_at(timedelta(hours=8, minutes=29)), None, T0, RULES)
    assert out.kind is TapKind.CLOCK_OUT
    assert out.since == T0 - timedelta(hours=8, minutes=29)
    assert out.duration == timedelta(hours=8, minutes=29)


@pytest.mark.parametrize("since_last, expected", [
    (0.0, TapKind.REPEAT), (2.999, TapKind.REPEAT), (3.0, TapKind.CLOCK_IN), (10.0, TapKind.CLOCK_IN), (None, TapKind.CLOCK_IN),
    (-1.0, TapKind.CLOCK_IN),  # impossible on a monotonic clock: never swallow a tap because of it
])
def test_debounce_boundaries(since_last, expected):
    assert decide(ANNA.uid, ANNA, None, since_last, T0, RULES).kind is expected


def test_debounce_applies_to_unknown_badges_too():
    assert decide("DEADBEEF", None, None, 1.0, T0, RULES).kind is TapKind.REPEAT


def test_zero_debounce_means_no_debounce():
    rules = Rules(debounce_seconds=0, min_session_seconds=60)
    assert decide(ANNA.uid, ANNA, None, 0.0, T0, rules).kind is TapKind.CLOCK_IN


@pytest.mark.parametrize("elapsed, expected", [
    (timedelta(seconds=1), TapKind.TOO_SOON), (timedelta(seconds=59.999), TapKind.TOO_SOON),
    (timedelta(seconds=60), TapKind.CLOCK_OUT), (timedelta(hours=16), TapKind.CLOCK_OUT),
])
def test_min_and_max_session_boundaries(elapsed, expected):
    out = decide(ANNA.uid, ANNA, open_at(elapsed), 100.0, T0, RULES)
    assert out.kind is expected
    if expected is TapKind.TOO_SOON:
        assert out.since == T0 - elapsed and not out.changes_state


def test_zero_min_session_allows_immediate_clock_out_but_never_to_equal_from():
    rules = Rules(debounce_seconds=0, min_session_seconds=0)
    assert decide(ANNA.uid, ANNA, open_at(timedelta(milliseconds=1)), None, T0, rules).kind is TapKind.CLOCK_OUT
    assert decide(ANNA.uid, ANNA, open_at(timedelta(0)), None, T0, rules).kind is TapKind.TOO_SOON
    # shorter than the API's millisecond: from and to could be equal there
    assert decide(ANNA.uid, ANNA, open_at(timedelta(microseconds=999)), None, T0, rules).kind is TapKind.TOO_SOON


def test_clock_moved_backwards_never_produces_an_entry():
    rules = Rules(debounce_seconds=0, min_session_seconds=0)
    out = decide(ANNA.uid, ANNA, open_at(-timedelta(hours=1)), None, T0, rules)
    assert out.kind is TapKind.TOO_SOON


def test_stale_clock_in_is_flagged_and_a_new_one_starts():
    stale = open_at(timedelta(hours=16, seconds=1))
    out = decide(ANNA.uid, ANNA, stale, None, T0, RULES)
    assert out.kind is TapKind.CLOCK_IN and out.stale == stale and out.at == T0
    assert out.since is None  # no invented end time for the forgotten session
    assert "16h" in out.message


def test_repeat_checked_before_everything_else():
    out = decide(ANNA.uid, ANNA, open_at(timedelta(hours=2)), 0.5, T0, RULES)
    assert out.kind is TapKind.REPEAT and out.username == "anna"


def test_other_users_open_clock_in_is_irrelevant():
    # the caller looks up the open clock-in of the badge's user; decide trusts it
    out = decide(ANNA.uid, ANNA, None, None, T0, RULES)
    assert out.kind is TapKind.CLOCK_IN


def test_incomparable_times_never_swallow_a_clock_out():
    """Clock-in stamped by a synced clock, tap by one that fake-hwclock set back after a
    reboot: the difference is meaningless, so it is a clock-out, fixed when the clock syncs."""
    open_ = open_at(-timedelta(hours=3))  # "in the future" as the wrong clock sees it
    out = decide(ANNA.uid, ANNA, open_, None, UNTRUSTED_T0, RULES)
    assert not elapsed(open_, UNTRUSTED_T0).comparable
    assert out.kind is TapKind.CLOCK_OUT and out.since == open_.since
    assert decide(ANNA.uid, ANNA, open_, 0.5, UNTRUSTED_T0, RULES).kind is TapKind.REPEAT


# ---------------------------------------------------------------- properties over all inputs

rules_st = st.builds(
    Rules,
    debounce_seconds=st.floats(0, 10), min_session_seconds=st.floats(0, 7200),
    max_session_hours=st.floats(2.1, 24),  # config guarantees max_session > min_session
)
badge_st = st.one_of(st.none(), st.builds(Badge, st.just(ANNA.uid), st.just("anna"), st.booleans()))
open_st = st.one_of(st.none(), st.builds(
    OpenClockIn, st.just("anna"), st.timedeltas(timedelta(days=-2), timedelta(days=3)).map(lambda d: T0 - d),
    synced=st.booleans()))
last_st = st.one_of(st.none(), st.floats(-5, 100))


@settings(max_examples=1000)
@given(badge_st, open_st, last_st, rules_st, st.booleans())
def test_decide_properties(badge, open_, since_last, rules, trusted_now):
    now = Stamp(T0, trusted_now, None, "")
    comparable = open_ is None or (open_.synced and trusted_now)  # different boots: the wall clock, if trusted
    out = decide(ANNA.uid, badge, open_, since_last, now, rules)
    repeat = since_last is not None and 0 <= since_last < rules.debounce_seconds
    assert (out.kind is TapKind.REPEAT) == repeat
    if repeat:
        return
    if badge is None:
        assert out.kind is TapKind.UNKNOWN
        return
    if not badge.enabled:
        assert out.kind is TapKind.DISABLED
        return
    assert out.username == "anna"
    if open_ is None:
        assert out.kind is TapKind.CLOCK_IN and out.stale is None
        return
    elapsed = (T0 - open_.since).total_seconds()
    if out.kind is TapKind.CLOCK_OUT:
        assert out.since == open_.since and out.at == T0
        if comparable:  # a queued entry is valid and within the session limits
            assert elapsed >= max(rules.min_session_seconds, 0.001)
        if comparable or open_.synced:
            assert elapsed <= rules.max_session_hours * 3600
    elif out.kind is TapKind.CLOCK_IN:  # stale; when incomparable only if surely so (see rules.decide)
        assert out.stale == open_ and elapsed > rules.max_session_hours * 3600
        assert comparable or open_.synced
    else:
        assert out.kind is TapKind.TOO_SOON and comparable and not out.changes_state
        assert elapsed < max(rules.min_session_seconds, 0.001)


def test_incomparable_but_already_too_long_is_a_stale_clock_in():
    """fake-hwclock never restores a time ahead of the truth: after a synced clock-in, an
    unsynced tap already past max_session_hours is surely a new day's clock-in."""
    friday = open_at(timedelta(hours=20))
    out = decide(ANNA.uid, ANNA, friday, None, UNTRUSTED_T0, RULES)
    assert out.kind is TapKind.CLOCK_IN and out.stale == friday
    unsynced_open = OpenClockIn("anna", T0 - timedelta(hours=20), synced=False, boot="b")
    assert decide(ANNA.uid, ANNA, unsynced_open, None, UNTRUSTED_T0, RULES).kind is TapKind.CLOCK_OUT


# ---------------------------------------------------------------- a monotonic base within one boot

BOOT = "boot-1"


def opened_at(boottime: float, since: datetime = T0, synced: bool = True) -> OpenClockIn:
    return OpenClockIn("anna", since, ANNA.uid, synced=synced, boottime=boottime, boot=BOOT)


def test_wall_clock_stepped_back_an_hour_is_not_too_soon():
    """chrony steps the clock back 1 h during a 2 h session: the session is still 2 h long."""
    opened = opened_at(1000.0)
    now = Stamp(T0 + timedelta(hours=1), True, 1000.0 + 2 * 3600, BOOT)  # wall says 1 h, boottime 2 h
    out = decide(ANNA.uid, ANNA, opened, None, now, RULES)
    assert out.kind is TapKind.CLOCK_OUT
    assert out.start == now.at - timedelta(hours=2) and out.duration == timedelta(hours=2)
    assert "moved -3600.0s" in out.note and "CLOCK_BOOTTIME" in out.note


def test_wall_clock_stepped_forward_20h_is_not_a_stale_clock_in():
    opened = opened_at(1000.0)
    now = Stamp(T0 + timedelta(hours=21), True, 1000.0 + 3600, BOOT)  # +20 h step, 1 h worked
    out = decide(ANNA.uid, ANNA, opened, None, now, RULES)
    assert out.kind is TapKind.CLOCK_OUT and out.stale is None
    assert out.duration == timedelta(hours=1) and out.at == now.at  # "as the later clock reads"


def test_too_soon_and_stale_follow_boottime_not_the_wall_clock():
    opened = opened_at(1000.0)
    soon = Stamp(T0 + timedelta(hours=5), True, 1000.0 + 30, BOOT)  # a +5 h step, 30 s later
    assert decide(ANNA.uid, ANNA, opened, None, soon, RULES).kind is TapKind.TOO_SOON
    late = Stamp(T0 - timedelta(hours=1), True, 1000.0 + 17 * 3600, BOOT)  # 17 h on boottime
    out = decide(ANNA.uid, ANNA, opened, None, late, RULES)
    assert out.kind is TapKind.CLOCK_IN and out.stale == opened


def test_small_drift_keeps_the_clock_in_time():
    opened = opened_at(1000.0)
    now = Stamp(T0 + timedelta(hours=8, seconds=1.5), True, 1000.0 + 8 * 3600, BOOT)  # 1.5 s of slew
    out = decide(ANNA.uid, ANNA, opened, None, now, RULES)
    assert out.kind is TapKind.CLOCK_OUT and out.start == T0 and not out.note


def test_clock_in_before_sync_gets_its_start_from_boottime_once_the_clock_is_trusted():
    opened = opened_at(1000.0, since=datetime(2025, 1, 1, tzinfo=UTC), synced=False)  # fake-hwclock's time
    now = Stamp(T0, True, 1000.0 + 4 * 3600, BOOT)
    out = decide(ANNA.uid, ANNA, opened, None, now, RULES)
    assert out.kind is TapKind.CLOCK_OUT and out.start == T0 - timedelta(hours=4)
    assert "before the clock was trusted" in out.note


def test_other_boot_uses_the_wall_clock():
    opened = OpenClockIn("anna", T0 - timedelta(hours=3), ANNA.uid, boottime=99999.0, boot="old-boot")
    now = Stamp(T0, True, 20.0, BOOT)
    span = elapsed(opened, now)
    assert not span.same_boot and span.comparable and span.seconds == 3 * 3600
    assert decide(ANNA.uid, ANNA, opened, None, now, RULES).start == opened.since
