"""GpioFeedback on gpiozero's mock pins: complete pin sequences, timing behaviour, status signs."""

from __future__ import annotations

import functools
import threading
import time
from datetime import datetime, timezone

import pytest
from gpiozero import LED, Buzzer, Device, TonalBuzzer
from gpiozero.exc import BadPinFactory
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin
from gpiozero.tones import Tone

from kiosk import feedback as feedback_module
from kiosk.config import FeedbackSettings
from kiosk.feedback import Health, Status
from kiosk.exc import GpioUnavailable
from kiosk.feedback.gpio import GpioFeedback
from kiosk.rules import TapKind, TapOutcome

from . import kioskproc

wait_for = functools.partial(kioskproc.wait_for, timeout=5.0, interval=0.001)  # the suite's one helper, polled fast

SCALE = 0.02  # patterns run 50x faster; sequences do not depend on speed
F, T = False, True
GREEN, RED, BLUE, BUZZER = 17, 27, 22, 18
PAIR = FeedbackSettings(leds="pair", buzzer="active")
RGB = FeedbackSettings(leds="rgb", buzzer="passive")


class _Recording:
    """Mock pin that also records every frequency change (the tone a passive buzzer plays)."""

    def __init__(self, factory, info):
        self.frequencies = []
        super().__init__(factory, info)

    def _set_frequency(self, value):
        if value != self._get_frequency():
            self.frequencies.append(value)
        super()._set_frequency(value)


class RecordingPin(_Recording, MockPin):
    pass


class RecordingPWMPin(_Recording, MockPWMPin):
    pass


@pytest.fixture
def pair_factory():
    factory = MockFactory(pin_class=RecordingPin)
    yield factory
    factory.reset()


@pytest.fixture
def rgb_factory():
    factory = MockFactory(pin_class=RecordingPWMPin)
    yield factory
    factory.reset()


@pytest.fixture
def make(request):
    """make(settings, factory, scale) -> GpioFeedback, closed after the test."""
    made = []

    def _make(settings, factory, scale=SCALE):
        fb = GpioFeedback(settings, pin_factory=factory, time_scale=scale)
        made.append(fb)
        return fb

    yield _make
    for fb in made:
        fb.close()


def outcome(kind: TapKind) -> TapOutcome:
    return TapOutcome(kind, "04A1B2C3", datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc), "alice")


def states(factory, pin) -> list:
    return [s.state for s in factory.pin(pin).states]


def notes(factory, pin) -> list:
    return [Tone.from_frequency(f).note if f else None for f in factory.pin(pin).frequencies]


def rises(seq) -> int:
    return sum(1 for a, b in zip(seq, seq[1:]) if not a and b)




def pulses(n: int, on=T, off=F) -> list:
    return [off] + [on, off] * n


# ---------------------------------------------------------------- every outcome, complete sequences

PAIR_EXPECTED = {
    TapKind.CLOCK_IN: {GREEN: pulses(1), RED: [F], BUZZER: pulses(1)},
    TapKind.CLOCK_OUT: {GREEN: pulses(2), RED: [F], BUZZER: pulses(2)},
    TapKind.TOO_SOON: {GREEN: pulses(3), RED: pulses(3), BUZZER: pulses(2)},
    TapKind.UNKNOWN: {GREEN: [F], RED: pulses(1), BUZZER: pulses(1)},
    TapKind.DISABLED: {GREEN: [F], RED: pulses(1), BUZZER: pulses(1)},
    TapKind.INVALID: {GREEN: [F], RED: pulses(1), BUZZER: pulses(1)},
    TapKind.ERROR: {GREEN: [F], RED: pulses(6), BUZZER: pulses(3)},
    TapKind.REPEAT: {GREEN: [F], RED: [F], BUZZER: [F]},
    TapKind.ENROLLED: {GREEN: pulses(4), RED: [F], BUZZER: pulses(3)},
}

# Passive buzzer: PWM duty 0.5 while a tone plays; the tone is in the frequencies.
RGB_EXPECTED = {
    TapKind.CLOCK_IN: {GREEN: pulses(1, 1, 0), RED: [0], BLUE: [0], BUZZER: pulses(1, 0.5, 0), "tones": ["E7", None]},
    TapKind.CLOCK_OUT: {GREEN: pulses(2, 1, 0), RED: [0], BLUE: [0], BUZZER: pulses(2, 0.5, 0), "tones": ["E7", None] * 2},
    TapKind.TOO_SOON: {
        GREEN: pulses(3, 1, 0), RED: pulses(3, 1, 0), BLUE: [0], BUZZER: pulses(2, 0.5, 0), "tones": ["A4", None] * 2,
    },
    TapKind.UNKNOWN: {GREEN: [0], RED: pulses(1, 1, 0), BLUE: [0], BUZZER: pulses(1, 0.5, 0), "tones": ["A4", None]},
    TapKind.DISABLED: {GREEN: [0], RED: pulses(1, 1, 0), BLUE: [0], BUZZER: pulses(1, 0.5, 0), "tones": ["A4", None]},
    TapKind.INVALID: {GREEN: [0], RED: pulses(1, 1, 0), BLUE: [0], BUZZER: pulses(1, 0.5, 0), "tones": ["A4", None]},
    TapKind.ERROR: {GREEN: [0], RED: pulses(6, 1, 0), BLUE: [0], BUZZER: pulses(3, 0.5, 0), "tones": ["A6", None] * 3},
    TapKind.REPEAT: {GREEN: [0], RED: [0], BLUE: [0], BUZZER: [0], "tones": []},
    TapKind.ENROLLED: {GREEN: pulses(4, 1, 0), RED: [0], BLUE: [0], BUZZER: pulses(3, 0.5, 0),
                       "tones": ["A4", None, "A6", None, "E7", None]},
}


def test_every_outcome_has_an_expectation():
    assert set(PAIR_EXPECTED) == set(TapKind) == set(RGB_EXPECTED)


@pytest.mark.parametrize("kind", list(TapKind))
def test_pair_and_active_buzzer_complete_sequences(kind, pair_factory, make):
    fb = make(PAIR, pair_factory)
    fb.show(outcome(kind))
    assert fb.wait_idle(5)
    got = {pin: states(pair_factory, pin) for pin in PAIR_EXPECTED[kind]}
    assert got == PAIR_EXPECTED[kind]


@pytest.mark.parametrize("kind", list(TapKind))
def test_rgb_and_passive_buzzer_complete_sequences(kind, rgb_factory, make):
    fb = make(RGB, rgb_factory)
    rgb_factory.pin(BUZZER).frequencies.clear()  # construction silences the buzzer
    fb.show(outcome(kind))
    assert fb.wait_idle(5)
    expected = dict(RGB_EXPECTED[kind])
    want_tones = expected.pop("tones")
    got = {pin: states(rgb_factory, pin) for pin in expected}
    assert got == expected
    assert notes(rgb_factory, BUZZER) == want_tones


def test_too_soon_alternates_without_lighting_both(pair_factory, make):
    fb = make(PAIR, pair_factory)
    order: list[tuple[int, bool]] = []
    for pin in (GREEN, RED):
        p = pair_factory.pin(pin)
        original = p._change_state

        def spy(value, _pin=pin, _original=original):
            changed = _original(value)
            if changed:
                order.append((_pin, bool(value)))
            return changed

        p._change_state = spy
    fb.show(outcome(TapKind.TOO_SOON))
    assert fb.wait_idle(5)
    lit = {GREEN: False, RED: False}
    sequence = []
    for pin, value in order:
        lit[pin] = value
        assert not (lit[GREEN] and lit[RED]), "red and green were on together"
        if value:
            sequence.append(pin)
    assert sequence == [RED, GREEN] * 3


# ---------------------------------------------------------------- never blocks, cut short


def test_show_returns_while_the_pattern_still_runs(pair_factory, make):
    fb = make(PAIR, pair_factory, scale=1.0)  # a real-length pattern: 1.3 s
    fb.show(outcome(TapKind.CLOCK_IN))
    assert fb.busy  # show did not wait for the pattern
    assert wait_for(lambda: pair_factory.pin(GREEN).state)
    assert fb.busy and not fb.wait_idle(0)  # green is on and the pattern is still in progress
    fb.close()  # cuts it short
    assert states(pair_factory, GREEN) == [F, T, F]


@pytest.mark.parametrize("config", ["pair", "rgb"])
def test_a_new_tap_cuts_the_running_pattern_short(config, pair_factory, rgb_factory, make):
    factory, settings = (pair_factory, PAIR) if config == "pair" else (rgb_factory, RGB)
    fb = make(settings, factory, scale=1.0)
    fb.show(outcome(TapKind.CLOCK_IN))
    assert wait_for(lambda: factory.pin(GREEN).state)
    fb.show(outcome(TapKind.UNKNOWN))
    assert wait_for(lambda: factory.pin(RED).state)
    green = factory.pin(GREEN).states
    assert [s.state for s in green] == [0, 1, 0]
    # Green went off as soon as the second tap came, not after its 1 s.
    assert green[2].timestamp < 0.5
    assert factory.pin(BUZZER).state  # the unknown badge's low tone plays
    fb.close()


def test_repeat_does_not_cut_a_running_pattern(pair_factory, make):
    fb = make(PAIR, pair_factory, scale=1.0)
    fb.show(outcome(TapKind.CLOCK_IN))
    assert wait_for(lambda: pair_factory.pin(GREEN).state)
    fb.show(outcome(TapKind.REPEAT))
    assert pair_factory.pin(GREEN).state and fb.busy
    fb.close()
    assert states(pair_factory, GREEN) == [F, T, F]


def test_back_to_back_taps_play_both_patterns(pair_factory, make):
    fb = make(PAIR, pair_factory)
    fb.show(outcome(TapKind.CLOCK_IN))
    assert fb.wait_idle(5)
    fb.show(outcome(TapKind.CLOCK_OUT))
    assert fb.wait_idle(5)
    assert states(pair_factory, GREEN) == pulses(3)
    assert states(pair_factory, BUZZER) == pulses(3)


# ---------------------------------------------------------------- status signs


def test_backlog_sign_starts_and_stops_silently_pair(pair_factory, make):
    fb = make(PAIR, pair_factory)  # sign: 2 ms flash every 100 ms
    fb.set_status(Status(Health.BACKLOG, "3 entries waiting"))
    assert fb.wait_idle(5)
    assert wait_for(lambda: rises(states(pair_factory, RED)) >= 2)  # it repeats
    fb.set_status(Status(Health.OK))
    assert fb.wait_idle(5)
    red = states(pair_factory, RED)
    assert red == pulses(rises(red))  # clean on/off flashes, ending off
    time.sleep(0.3)  # three sign periods: nothing more happens
    assert states(pair_factory, RED) == red
    assert states(pair_factory, GREEN) == [F]
    assert states(pair_factory, BUZZER) == [F]


def test_backlog_sign_is_dim_blue_on_rgb(rgb_factory, make):
    fb = make(RGB, rgb_factory)
    fb.set_status(Status(Health.BACKLOG))
    assert wait_for(lambda: rises(states(rgb_factory, BLUE)) >= 2)
    fb.set_status(Status(Health.OK))
    assert fb.wait_idle(5)
    blue = states(rgb_factory, BLUE)
    assert blue == pulses(rises(blue), 0.25, 0)
    assert states(rgb_factory, RED) == [0] and states(rgb_factory, GREEN) == [0]
    assert states(rgb_factory, BUZZER) == [0]


def test_status_sign_resumes_after_a_tap(pair_factory, make):
    fb = make(PAIR, pair_factory)
    fb.set_status(Status(Health.BACKLOG))
    assert wait_for(lambda: rises(states(pair_factory, RED)) >= 1)
    fb.show(outcome(TapKind.CLOCK_IN))
    assert wait_for(lambda: pair_factory.pin(GREEN).state)
    before = rises(states(pair_factory, RED))
    assert not pair_factory.pin(RED).state  # the sign stopped for the pattern
    assert fb.wait_idle(5)
    assert wait_for(lambda: rises(states(pair_factory, RED)) > before)  # and came back
    assert states(pair_factory, GREEN) == pulses(1)
    assert states(pair_factory, BUZZER) == pulses(1)


def test_fault_alerts_once_then_repeats_a_silent_sign_until_cleared(pair_factory, make):
    fb = make(PAIR, pair_factory)  # fault sign: 4 ms on / 16 ms off
    fb.set_status(Status(Health.FAULT, "credentials rejected"))
    assert fb.busy
    assert wait_for(lambda: rises(states(pair_factory, RED)) >= 6 + 3)  # alert, then the sign repeats
    fb.set_status(Status(Health.OK))
    assert fb.wait_idle(5)
    red = states(pair_factory, RED)
    assert red == pulses(rises(red))
    assert states(pair_factory, BUZZER) == pulses(3)  # the three error beeps, once
    time.sleep(0.1)
    assert states(pair_factory, RED) == red


def test_fault_sign_resumes_after_a_tap_without_beeping_again(rgb_factory, make):
    fb = make(RGB, rgb_factory)
    fb.set_status(Status(Health.FAULT))
    assert wait_for(lambda: rises(states(rgb_factory, RED)) >= 7)
    fb.show(outcome(TapKind.CLOCK_IN))
    assert fb.wait_idle(5)
    before = rises(states(rgb_factory, RED))
    assert wait_for(lambda: rises(states(rgb_factory, RED)) > before)  # the fault sign is back
    assert states(rgb_factory, GREEN) == pulses(1, 1, 0)
    assert states(rgb_factory, BUZZER) == pulses(3 + 1, 0.5, 0)  # alert + the clock-in beep only


def test_error_tap_followed_by_fault_beeps_once(pair_factory, make):
    fb = make(PAIR, pair_factory, scale=0.2)  # the fault comes while the error pattern still plays
    fb.show(outcome(TapKind.ERROR))
    fb.set_status(Status(Health.FAULT, "store error"))
    assert fb.wait_idle(5)
    assert states(pair_factory, BUZZER) == pulses(3)


# ---------------------------------------------------------------- devices


def test_close_releases_every_pin(pair_factory, rgb_factory):
    for settings, factory, pins in ((PAIR, pair_factory, (GREEN, RED)), (RGB, rgb_factory, (RED, GREEN, BLUE))):
        fb = GpioFeedback(settings, pin_factory=factory, time_scale=SCALE)
        fb.set_status(Status(Health.BACKLOG))
        fb.show(outcome(TapKind.CLOCK_IN))
        fb.close()
        fb.close()  # idempotent
        fb.show(outcome(TapKind.CLOCK_OUT))  # ignored after close
        fb.set_status(Status(Health.FAULT))
        assert not [t for t in threading.enumerate() if t.name == "kiosk-feedback"]
        for pin in pins:
            LED(pin, pin_factory=factory).close()  # free again
            assert not factory.pin(pin).state
        buzzer = (Buzzer if settings.buzzer == "active" else TonalBuzzer)(BUZZER, pin_factory=factory)
        buzzer.close()


def test_a_busy_pin_is_named(pair_factory):
    held = LED(GREEN, pin_factory=pair_factory)
    with pytest.raises(GpioUnavailable, match=r"green LED on GPIO17 .*in use"):
        GpioFeedback(PAIR, pin_factory=pair_factory)
    held.close()


def test_a_busy_buzzer_pin_releases_the_leds_already_opened(pair_factory):
    held = Buzzer(BUZZER, pin_factory=pair_factory)
    with pytest.raises(GpioUnavailable, match=r"active buzzer on GPIO18 "):
        GpioFeedback(PAIR, pin_factory=pair_factory)
    LED(GREEN, pin_factory=pair_factory).close()
    LED(RED, pin_factory=pair_factory).close()
    held.close()


def test_permission_denied_is_explained():
    class NoPermission(MockFactory):
        def pin(self, name, pin_class=None, **kwargs):
            raise PermissionError(13, "Permission denied", "/dev/gpiochip0")

    with pytest.raises(GpioUnavailable, match=r"RGB LED on GPIO27 \(red\), GPIO17 \(green\), GPIO22 \(blue\).*permission denied.*group gpio"):
        GpioFeedback(RGB, pin_factory=NoPermission(pin_class=MockPWMPin))


def test_no_gpio_is_explained(monkeypatch):
    def no_factory():
        raise BadPinFactory("Unable to load any default pin factory!")

    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setattr(Device, "_default_pin_factory", staticmethod(no_factory))
    with pytest.raises(GpioUnavailable, match=r"green LED on GPIO17 .*no GPIO access"):
        GpioFeedback(PAIR)


def test_pins_must_differ():
    with pytest.raises(GpioUnavailable, match=r"feedback.green_pin and feedback.buzzer_pin are both GPIO17"):
        GpioFeedback(FeedbackSettings(leds="pair", buzzer="active", buzzer_pin=17), pin_factory=MockFactory())


def test_none_touches_no_pin():
    factory = MockFactory()
    fb = GpioFeedback(FeedbackSettings(leds="none", buzzer="none"), pin_factory=factory, time_scale=SCALE)
    fb.show(outcome(TapKind.CLOCK_IN))
    fb.set_status(Status(Health.FAULT))
    assert fb.wait_idle(5)
    fb.close()
    assert not factory.pins


def test_create_uses_the_default_pin_factory(monkeypatch):
    factory = MockFactory(pin_class=RecordingPWMPin)
    monkeypatch.setattr(Device, "pin_factory", factory)
    fb = feedback_module.create(FeedbackSettings(type="gpio", leds="rgb", buzzer="passive"))
    try:
        assert isinstance(fb, GpioFeedback)
        assert factory.pin(BLUE).function == "output"
    finally:
        fb.close()
        factory.reset()
