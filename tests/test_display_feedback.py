"""DisplayFeedback: the real luma drivers over a simulated I2C panel (kiosk.sim.display), pinned clocks.

What must hold: show() never waits for the device (even a hanging one), a failing display is
logged once per streak, reported through on_health, retried with backoff and recovers; taps
still reach every other feedback device; burn-in care (dim, blank, shift) works; names scroll.
"""

from __future__ import annotations

import atexit
import logging
import threading

import pytest

pytest.importorskip("luma.oled", reason="the display extra (luma) is not installed: pip install -e '.[display]'")

from PIL import ImageChops  # noqa: E402

from kiosk.config import DisplaySettings  # noqa: E402
from kiosk.feedback import Feedback, Health, Status, screens  # noqa: E402
from kiosk.feedback.display import DisplayFeedback, open_device, shift_offsets, to_device_mode  # noqa: E402
from kiosk.feedback.multi import MultiFeedback  # noqa: E402
from kiosk.exc import Cause, DisplayUnavailable  # noqa: E402
from kiosk.rules import TapKind  # noqa: E402
from kiosk.sim.display import Hardware  # noqa: E402

from .display_helpers import UTC, FakeClock, display, outcome  # noqa: E402
from .kioskproc import wait_for  # noqa: E402


def expected(screen, size=(128, 64), frame=0, offset=(0, 0)) -> bytes:
    return screens.Renderer(size).render(screen, frame, offset).tobytes()


def on_glass(hw: Hardware) -> bytes:
    return hw.bus.image().tobytes()


class Recording(Feedback):
    name = "recording"

    def __init__(self):
        self.shown = []

    def show(self, outcome):
        self.shown.append(outcome)


# ---------------------------------------------------------------- drawing on the simulated panel


@pytest.mark.parametrize("driver", ["ssd1306", "sh1106"])
@pytest.mark.parametrize("rotate", [0, 2])
def test_real_driver_puts_the_screen_on_the_glass(driver, rotate):
    hw = Hardware(chip=driver)
    feedback = display(hardware=hw, driver=driver, rotate=rotate)
    feedback.show(outcome(TapKind.CLOCK_IN))
    feedback.step()
    screen = screens.for_outcome(outcome(TapKind.CLOCK_IN), tz=UTC)
    picture = screens.Renderer().render(screen)
    if rotate == 2:  # luma turns the picture; the glass shows it upside down, as mounted
        picture = picture.rotate(180)
    assert on_glass(hw) == picture.tobytes()
    assert hw.bus.on and hw.bus.contrast == 255


def test_only_changed_pictures_are_written():
    hw = Hardware()
    feedback = display(hardware=hw)
    for _ in range(5):
        feedback.step()
    assert feedback.frames_written == 1
    feedback.show(outcome(TapKind.CLOCK_IN))
    feedback.step()
    feedback.step()
    assert feedback.frames_written == 2


def test_a_tap_screen_stays_for_tap_seconds_then_the_idle_screen_returns():
    clock, hw = FakeClock(), Hardware()
    feedback = display(hardware=hw, mono=clock, tap_seconds=4)
    feedback.show(outcome(TapKind.CLOCK_OUT))
    feedback.step()
    out = screens.for_outcome(outcome(TapKind.CLOCK_OUT), tz=UTC)
    assert on_glass(hw) == expected(out)
    clock.advance(3.9)
    feedback.step()
    assert on_glass(hw) == expected(out)
    clock.advance(0.2)
    feedback.step()
    assert feedback.current()[0].kind == "idle"
    assert on_glass(hw) != expected(out)


def test_a_repeat_tap_keeps_the_screen_and_does_not_replace_it():
    clock = FakeClock()
    feedback = display(mono=clock, tap_seconds=4)
    feedback.show(outcome(TapKind.CLOCK_IN))
    clock.advance(3)
    feedback.show(outcome(TapKind.REPEAT))  # the card is still on the reader
    clock.advance(3)
    assert feedback.current()[0].kind == "clock_in"
    clock.advance(1.1)
    assert feedback.current()[0].kind == "idle"


def test_a_long_name_stays_until_it_has_scrolled_by():
    clock = FakeClock()
    feedback = display(mono=clock, tap_seconds=4)
    feedback.show(outcome(TapKind.CLOCK_IN, "Maximiliane Wolfeschlegelsteinhausen"))
    screen = feedback.current()[0]
    frames = feedback.renderer.frames(screen)
    assert frames * screens.SCROLL_SECONDS > 4
    seen = []
    for _ in range(frames):
        seen.append(feedback.current()[1])
        clock.advance(screens.SCROLL_SECONDS)
    assert seen == list(range(frames))  # every step shown once, in order
    assert feedback.current()[0].kind == "clock_in"
    clock.advance(1.01)
    assert feedback.current()[0].kind == "idle"


def test_enrolment_prompt_until_ended_and_taps_show_over_it():
    clock = FakeClock()
    feedback = display(mono=clock)
    feedback.enrolling("ben")
    assert feedback.current()[0] == screens.enrolment("ben")
    feedback.show(outcome(TapKind.UNKNOWN, None, "04D5E6F7A8B9C0"))
    assert feedback.current()[0].kind == "unknown"
    clock.advance(5)
    assert feedback.current()[0].kind == "enrol"
    feedback.enrolling(None)
    assert feedback.current()[0].kind == "idle"


def test_status_lines_on_the_idle_screen():
    feedback = display()
    feedback.set_status(Status(Health.FAULT, "reader not answering; credentials rejected", queued=3))
    screen = feedback.current()[0]
    assert screen.status == ("reader not answering", "credentials rejected", "3 queued") and screen.alert
    feedback.set_status(Status(Health.BACKLOG, "entries waiting for delivery", queued=12))
    screen = feedback.current()[0]
    assert screen.status == ("offline: 12 queued",) and not screen.alert
    feedback.set_status(Status())
    assert feedback.current()[0].status == ()


def test_colour_panels_get_the_screen_in_rgb():
    image = screens.Renderer().render(screens.for_outcome(outcome(TapKind.UNKNOWN), tz=UTC))
    rgb = to_device_mode(image, "RGB", "unknown")
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (255, 60, 60)  # the headline bar, in red
    assert to_device_mode(image, "1", "unknown") is image


# ---------------------------------------------------------------- burn-in care


def test_dims_then_blanks_when_idle_and_a_tap_wakes_it():
    clock, hw = FakeClock(), Hardware()
    feedback = display(hardware=hw, mono=clock, dim_after_seconds=30, blank_after_seconds=300, dim_contrast=10)
    feedback.step()
    assert (hw.bus.on, hw.bus.contrast) == (True, 255)
    clock.advance(30)
    feedback.step()
    assert (hw.bus.on, hw.bus.contrast) == (True, 10)
    clock.advance(270)
    feedback.step()
    assert not hw.bus.on
    writes = hw.bus.writes
    clock.advance(60)
    feedback.step()
    assert hw.bus.writes == writes  # blank: nothing is written
    feedback.show(outcome(TapKind.CLOCK_IN))
    feedback.step()
    assert (hw.bus.on, hw.bus.contrast) == (True, 255)
    assert on_glass(hw) == expected(screens.for_outcome(outcome(TapKind.CLOCK_IN), tz=UTC))


def test_a_new_problem_wakes_a_dimmed_display():
    clock, hw = FakeClock(), Hardware()
    feedback = display(hardware=hw, mono=clock, dim_after_seconds=30)
    clock.advance(31)
    feedback.step()
    assert hw.bus.contrast == 16
    feedback.set_status(Status(Health.FAULT, "reader not answering"))
    feedback.step()
    assert hw.bus.contrast == 255
    clock.advance(31)
    feedback.set_status(Status(Health.FAULT, "reader not answering"))  # the same problem again: stays dim
    feedback.step()
    assert hw.bus.contrast == 16


def test_zero_means_never_dim_never_blank():
    clock, hw = FakeClock(), Hardware()
    feedback = display(hardware=hw, mono=clock, dim_after_seconds=0, blank_after_seconds=0)
    clock.advance(7 * 86400)
    feedback.step()
    assert (hw.bus.on, hw.bus.contrast) == (True, 255)


def test_the_idle_screen_moves_a_few_pixels_now_and_then():
    clock = FakeClock()
    feedback = display(mono=clock, shift_pixels=2, shift_seconds=60)
    seen = []
    for _ in range(len(shift_offsets(2))):
        screen, frame, offset, _ = feedback.current()
        seen.append(offset)
        clock.advance(60)
    assert set(seen) == {(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)}
    base = screens.Renderer(inset=2).render(feedback.current()[0])
    for dx, dy in seen:
        moved = screens.Renderer(inset=2).render(feedback.current()[0], offset=(dx, dy))
        assert moved.getbbox() is not None
        # the same picture, moved: nothing is cut at the edges
        assert ImageChops.offset(base, dx, dy).tobytes() == moved.tobytes()
    assert display(shift_pixels=0).current()[2] == (0, 0)


# ---------------------------------------------------------------- failures


def test_a_broken_display_is_logged_once_reported_and_retried_with_backoff(caplog):
    clock, hw = FakeClock(), Hardware("broken")
    feedback = display(hardware=hw, mono=clock)
    health = []
    feedback.on_health = lambda ok, message: health.append((ok, message))
    caplog.set_level(logging.DEBUG, logger="kiosk.feedback.display")
    opens, waits = [], []
    for _ in range(12):
        wait = feedback.step()
        opens.append(hw.opens)
        waits.append(wait)
        clock.advance(feedback._next_open - clock.now)  # straight to the next attempt
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "not answering" in errors[0].getMessage()
    assert health == [(False, health[0][1])] and "0x3C" in health[0][1]
    assert opens == list(range(1, 13))  # one attempt each time it was due
    gaps = []
    clock2, hw2 = FakeClock(), Hardware("broken")
    feedback2 = display(hardware=hw2, mono=clock2)
    for _ in range(9):
        feedback2.step()
        gaps.append(feedback2._next_open - clock2.now)
        clock2.advance(gaps[-1])
    assert gaps == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    # between attempts nothing is tried
    feedback2.step()
    before = hw2.opens
    clock2.advance(30)
    feedback2.step()
    assert hw2.opens == before


def test_it_recovers_when_the_display_answers_again(caplog):
    clock, hw = FakeClock(), Hardware()
    feedback = display(hardware=hw, mono=clock)
    health = []
    feedback.on_health = lambda ok, message: health.append(ok)
    caplog.set_level(logging.INFO, logger="kiosk.feedback.display")
    feedback.step()
    hw.bus.fault = "broken"  # unplugged while running
    feedback.show(outcome(TapKind.CLOCK_IN))
    feedback.step()
    assert health == [False]
    hw.bus.fault = None  # plugged back in: re-initialised from scratch
    hw.bus.on = False
    clock.advance(1)
    feedback.step()
    assert health == [False, True]
    assert hw.bus.on and on_glass(hw) == expected(screens.for_outcome(outcome(TapKind.CLOCK_IN), tz=UTC))
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_an_absent_bus_is_reported_as_missing():
    with pytest.raises(DisplayUnavailable) as info:
        open_device(DisplaySettings(), hardware=Hardware("absent"))
    assert info.value.cause is Cause.DEVICE_MISSING and "/dev/i2c-1" in str(info.value)


def test_failed_opens_leave_no_exit_hooks_behind():
    """luma registers an atexit hook per device: retried every minute that would grow without end."""
    clock, hw = FakeClock(), Hardware("broken")
    feedback = display(hardware=hw, mono=clock)
    feedback.step()
    before = atexit._ncallbacks()
    for _ in range(20):
        clock.advance(feedback._next_open - clock.now)
        feedback.step()
    assert hw.opens == 21
    assert atexit._ncallbacks() == before


def test_show_returns_at_once_while_the_display_hangs():
    hw = Hardware("hang")
    feedback = DisplayFeedback(DisplaySettings(), hardware=hw, tz=UTC)  # its own thread
    health = []
    feedback.on_health = lambda ok, message: health.append((ok, message))
    try:
        assert wait_for(lambda: feedback._writing_since is not None, 10)  # the thread is stuck in a write
        done = threading.Event()

        def taps():
            for i in range(50):
                feedback.show(outcome(TapKind.CLOCK_IN, f"user{i}"))
                feedback.set_status(Status(Health.BACKLOG, "", queued=i))
            done.set()

        threading.Thread(target=taps, daemon=True).start()
        assert done.wait(10), "show() waited for the hanging display"
        assert feedback.current()[0].main == "user49"  # the latest tap is what it will show
        feedback._writing_since -= 60  # as if the write had hung for a minute
        feedback.show(outcome(TapKind.CLOCK_IN))
        assert health and health[0][0] is False and "hangs" in health[0][1]
    finally:
        hw.release()
        feedback.close()


def test_taps_reach_the_other_devices_while_the_display_fails():
    recording = Recording()
    hw = Hardware("broken")
    shown = DisplayFeedback(DisplaySettings(), hardware=hw, tz=UTC)
    combined = MultiFeedback([shown, recording])
    health = []
    combined.on_health = lambda ok, message: health.append((ok, message))
    try:
        outcomes = [outcome(TapKind.CLOCK_IN, f"user{i}") for i in range(100)]
        for o in outcomes:
            combined.show(o)
        assert recording.shown == outcomes
        assert wait_for(lambda: health, 10)
        assert health[0][0] is False and health[0][1].startswith("display: ")
    finally:
        combined.close()


def test_a_bug_in_drawing_never_kills_the_thread(monkeypatch):
    hw = Hardware()
    feedback = DisplayFeedback(DisplaySettings(), hardware=hw, tz=UTC)
    try:
        calls = []

        def broken(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("a bug")

        monkeypatch.setattr(feedback, "current", broken)
        feedback.show(outcome(TapKind.CLOCK_IN))
        assert wait_for(lambda: calls, 5)
        assert feedback._thread.is_alive()
    finally:
        monkeypatch.undo()
        feedback.close()


def test_close_blanks_the_display_and_ends_the_thread():
    hw = Hardware()
    feedback = DisplayFeedback(DisplaySettings(), hardware=hw, tz=UTC)
    assert wait_for(lambda: hw.bus.on, 10)
    feedback.close()
    assert not feedback._thread.is_alive()
    assert not hw.bus.on


# ---------------------------------------------------------------- any name


def test_names_in_any_script_render_or_fall_back_without_error():
    from hypothesis import given, settings, strategies as st

    renderer = screens.Renderer()

    @settings(max_examples=150, deadline=None)
    @given(st.text(min_size=1, max_size=60))
    def draw(name):
        screen = screens.for_outcome(outcome(TapKind.CLOCK_OUT, name), tz=UTC)
        for frame in range(min(renderer.frames(screen), 3)):
            image = renderer.render(screen, frame)
            assert image.size == (128, 64) and image.mode == "1"

    draw()


@pytest.mark.parametrize("name, shown", [
    ("Ζωή", "Ζωή"), ("Алексей", "Алексей"), ("Ångström", "Ångström"),
    ("José 山田", "José ??"), ("שרה", "04A1B2C3"), ("山田太郎", "04A1B2C3"), ("a\u200bb", "a?b"),
])
def test_characters_the_font_cannot_draw_become_question_marks(name, shown):
    renderer = screens.Renderer()
    screen = screens.for_outcome(outcome(TapKind.CLOCK_IN, name), tz=UTC)
    assert renderer._main_text(screen)[0] == shown


def test_without_dejavu_pillows_default_font_stands_in(tmp_path):
    fonts = screens.Fonts({face: str(tmp_path / "missing.ttf") for face in ("regular", "bold", "mono")})
    fonts.paths = {face: None for face in fonts.paths}  # as on a system without fonts-dejavu-core
    renderer = screens.Renderer(fonts=fonts)
    image = renderer.render(screens.for_outcome(outcome(TapKind.CLOCK_OUT, "Алексей"), tz=UTC))
    assert image.getbbox() is not None and fonts.missing == ["regular", "bold", "mono"]


def test_never_cut_mid_letter():
    renderer = screens.Renderer()
    screen = screens.for_outcome(outcome(TapKind.CLOCK_IN, "Maximiliane Wolfeschlegelsteinhausen"), tz=UTC)
    fit = renderer._main_fit(screen)
    name = "Maximiliane Wolfeschlegelsteinhausen"
    for window in fit.windows:
        assert window in name  # whole characters of the name, nothing cut
        assert fit.font.getlength(window) <= 124
    assert fit.windows[0].startswith("Maximiliane") and name.endswith(fit.windows[-1])


def test_a_failure_before_anyone_listened_is_told_on_assignment():
    hw = Hardware("broken")
    feedback = DisplayFeedback(DisplaySettings(), hardware=hw, tz=UTC)
    combined = MultiFeedback([Recording(), feedback])
    try:
        assert wait_for(lambda: not feedback.healthy, 10)
        health = []
        combined.on_health = lambda ok, message: health.append((ok, message))  # as the daemon does, later
        assert health and health[0][0] is False and "not answering" in health[0][1]
    finally:
        combined.close()


@pytest.mark.parametrize("driver, size", [("st7735", (160, 128)), ("ili9341", (320, 240))])
def test_spi_lcds_through_luma_lcd_over_a_simulated_spi_bus(driver, size):
    pytest.importorskip("luma.lcd")
    hw = Hardware()
    feedback = display(hardware=hw, driver=driver)
    health = []
    feedback.on_health = lambda ok, message: health.append(ok)
    feedback.step()
    device = feedback.device
    assert tuple(device.size) == size and device.mode == "RGB"
    assert hw.spi_bus.opened == (0, 1)  # CE1: the reader keeps CE0
    assert {24, 23, 12} <= hw.pins.setup_pins and hw.pins.levels[12] == 1  # DC, RST, backlight on
    before = hw.spi_bus.bytes_written
    feedback.show(outcome(TapKind.CLOCK_IN))
    feedback.step()
    assert hw.spi_bus.bytes_written > before
    hw.spi_bus.fault = "broken"
    feedback.show(outcome(TapKind.CLOCK_OUT))
    feedback.step()
    assert health == [False]
    lit = Hardware()
    blanking = display(hardware=lit, driver=driver, mono=(clock := FakeClock()), blank_after_seconds=10)
    blanking.step()
    clock.advance(10)
    blanking.step()
    assert lit.pins.levels[12] == 0  # blank: the backlight goes off too
    blanking.show(outcome(TapKind.CLOCK_IN))
    blanking.step()
    assert lit.pins.levels[12] == 1
    wired = Hardware()
    fixed = display(hardware=wired, driver=driver, backlight_pin=-1)
    fixed.step()
    assert fixed.device is not None and wired.pins.setup_pins == {24, 23}  # backlight on 3V3: no pin taken
