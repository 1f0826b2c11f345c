"""GPIO feedback: LEDs and a buzzer on the Raspberry Pi, driven by gpiozero.

Hardware (``[feedback]`` in the config, BCM pin numbers):

- ``leds = "pair"``: a green LED on ``green_pin`` (17) and a red LED on
  ``red_pin`` (27); ``leds = "rgb"``: a common-cathode RGB LED on ``red_pin``,
  ``green_pin`` and ``blue_pin`` (22), PWM-driven; ``leds = "none"``.
- ``buzzer = "active"``: an active buzzer (beeps at its own pitch when powered)
  on ``buzzer_pin`` (18); ``buzzer = "passive"``: a piezo driven with PWM tones;
  ``buzzer = "none"``.

The patterns (light, sound, timing per outcome) are in :mod:`kiosk.feedback.patterns`.

How it runs: ``show`` and ``set_status`` only hand the request to one worker
thread and return at once. The worker plays a tap pattern step by step (one
thread sets LEDs and buzzer together, so light and sound stay in lockstep) and
waits between steps on an Event, so a new tap cuts the running pattern short
at once. The long-running status signs use gpiozero's own background
``blink(..., background=True)``, stopped by the worker when a pattern starts
or the status changes.
"""

from __future__ import annotations

import logging
import threading

from kiosk.exc import Cause, GpioUnavailable
from kiosk.feedback import Feedback, Health, Status
from kiosk.feedback.patterns import (DIM, FAULT_ALERT, GREEN, OFF, PASSIVE_MID_TONE, PASSIVE_OCTAVES, PATTERNS, RED,
                                     SIGNS, Step)
from kiosk.rules import TapKind, TapOutcome

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- devices


def _open(what: str, pins: str, factory, *args, **kwargs):
    """Construct a gpiozero device, turning any failure into a clear message."""
    from gpiozero.exc import BadPinFactory, GPIOPinInUse

    try:
        return factory(*args, **kwargs)
    except BadPinFactory as exc:
        reason, cause = f"no GPIO access ({exc}): not a Raspberry Pi, or no pin library (lgpio) installed", Cause.NOT_A_PI
    except GPIOPinInUse as exc:
        reason, cause = f"pin already in use ({exc})", Cause.PIN_BUSY
    except PermissionError as exc:
        reason, cause = f"permission denied ({exc}): add the kiosk user to group gpio", Cause.PERMISSION
    except Exception as exc:  # pin libraries raise their own types (lgpio.error "GPIO busy", ...)
        reason = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        low = reason.lower()
        cause = Cause.PIN_BUSY if "busy" in low or "in use" in low else Cause.PIN_SETUP
    raise GpioUnavailable(f"cannot set up the {what} on {pins} (BCM numbering): {reason}", cause)


class _NoLights:
    def show(self, light: str) -> None:
        pass

    def blink(self, light: str, on: float, off: float) -> None:
        pass

    def off(self) -> None:
        pass

    def close(self) -> None:
        pass


class _PairLights(_NoLights):
    """A green and a red LED (plain on/off)."""

    # light -> (green, red)
    LIGHTS = {OFF: (0, 0), GREEN: (1, 0), RED: (0, 1), DIM: (0, 1)}

    def __init__(self, settings, pin_factory) -> None:
        from gpiozero import LED

        self.green = _open("green LED", f"GPIO{settings.green_pin}", LED, settings.green_pin, pin_factory=pin_factory)
        try:
            self.red = _open("red LED", f"GPIO{settings.red_pin}", LED, settings.red_pin, pin_factory=pin_factory)
        except BaseException:
            self.green.close()
            raise

    def show(self, light: str) -> None:
        wanted = dict(zip((self.green, self.red), self.LIGHTS[light]))
        # Switch off before on, so red -> green never flashes both.
        for led, value in sorted(wanted.items(), key=lambda item: item[1]):
            led.value = value

    def blink(self, light: str, on: float, off: float) -> None:
        for led, value in zip((self.green, self.red), self.LIGHTS[light]):
            if value:
                led.blink(on_time=on, off_time=off, n=None, background=True)
            else:
                led.off()

    def off(self) -> None:
        self.green.off()
        self.red.off()

    def close(self) -> None:
        self.green.close()
        self.red.close()


class _RgbLights(_NoLights):
    """A common-cathode RGB LED on three PWM outputs."""

    LIGHTS = {OFF: (0, 0, 0), GREEN: (0, 1, 0), RED: (1, 0, 0), DIM: (0, 0, 0.25)}

    def __init__(self, settings, pin_factory) -> None:
        from gpiozero import RGBLED

        pins = f"GPIO{settings.red_pin} (red), GPIO{settings.green_pin} (green), GPIO{settings.blue_pin} (blue)"
        self.led = _open(
            "RGB LED", pins, RGBLED, settings.red_pin, settings.green_pin, settings.blue_pin, pin_factory=pin_factory
        )

    def show(self, light: str) -> None:
        self.led.value = self.LIGHTS[light]

    def blink(self, light: str, on: float, off: float) -> None:
        self.led.blink(on_time=on, off_time=off, on_color=self.LIGHTS[light], off_color=(0, 0, 0), n=None, background=True)

    def off(self) -> None:
        self.led.off()

    def close(self) -> None:
        self.led.close()


class _NoSound:
    def play(self, tone: str | None) -> None:
        pass

    def close(self) -> None:
        pass


class _ActiveSound(_NoSound):
    def __init__(self, settings, pin_factory) -> None:
        from gpiozero import Buzzer

        pin = settings.buzzer_pin
        self.buzzer = _open("active buzzer", f"GPIO{pin}", Buzzer, pin, pin_factory=pin_factory)

    def play(self, tone: str | None) -> None:
        if tone is None:
            self.buzzer.off()
        else:
            self.buzzer.on()

    def close(self) -> None:
        self.buzzer.close()


class _PassiveSound(_NoSound):
    def __init__(self, settings, pin_factory) -> None:
        from gpiozero import TonalBuzzer
        from gpiozero.tones import Tone

        pin = settings.buzzer_pin
        self.buzzer = _open(
            "passive buzzer", f"GPIO{pin}", TonalBuzzer, pin,
            mid_tone=Tone(PASSIVE_MID_TONE), octaves=PASSIVE_OCTAVES, pin_factory=pin_factory,
        )

    def play(self, tone: str | None) -> None:
        if tone is None:
            self.buzzer.stop()
        else:
            self.buzzer.play(tone)

    def close(self) -> None:
        self.buzzer.close()


def _check_pins(settings) -> None:
    used: dict[int, str] = {}
    names = {"pair": ("green_pin", "red_pin"), "rgb": ("red_pin", "green_pin", "blue_pin")}.get(settings.leds, ())
    if settings.buzzer in ("active", "passive"):
        names += ("buzzer_pin",)
    for name in names:
        pin = getattr(settings, name)
        if pin in used:
            raise GpioUnavailable(f"feedback.{used[pin]} and feedback.{name} are both GPIO{pin}: each needs its own pin",
                                      Cause.PIN_CONFLICT)
        used[pin] = name


# ---------------------------------------------------------------- feedback


class GpioFeedback(Feedback):
    """LEDs and buzzer per ``settings`` (:class:`kiosk.config.FeedbackSettings`).

    ``pin_factory``: a gpiozero pin factory (tests pass a ``MockFactory``);
    None uses gpiozero's default. ``time_scale`` multiplies every duration
    (1.0 on a kiosk; tests and demos may speed patterns up).
    Raises :class:`~kiosk.exc.GpioUnavailable` naming the pin if a device cannot be set up.

        >>> from datetime import UTC, datetime
        >>> from gpiozero.pins.mock import MockFactory, MockPWMPin
        >>> from kiosk.config import FeedbackSettings
        >>> factory = MockFactory(pin_class=MockPWMPin)
        >>> leds = GpioFeedback(FeedbackSettings(), pin_factory=factory)
        >>> leds.show(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", datetime.now(UTC), "anna"))  # returns at once
        >>> leds.wait_idle(5)
        True
        >>> leds.close()
    """

    name = "gpio"

    def __init__(self, settings, *, pin_factory=None, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be greater than 0, not {time_scale!r}")
        _check_pins(settings)
        self._scale = time_scale
        lights = {"pair": _PairLights, "rgb": _RgbLights}.get(settings.leds)
        sound = {"active": _ActiveSound, "passive": _PassiveSound}.get(settings.buzzer)
        self._lights = lights(settings, pin_factory) if lights else _NoLights()
        try:
            self._sound = sound(settings, pin_factory) if sound else _NoSound()
        except BaseException:
            self._lights.close()
            raise
        self._lock = threading.Lock()
        self._cut = threading.Event()  # a new tap or close(): stop the running pattern now
        self._wake = threading.Event()  # anything changed: the worker looks again
        self._idle = threading.Event()  # nothing to play, and the status sign is up to date
        self._idle.set()
        self._pending: tuple[str, tuple[Step, ...]] | None = None
        self._playing: str | None = None
        self._status = Status()
        self._alert = False
        self._closing = False
        self._light, self._tone = OFF, None  # what the worker last set
        self._thread = threading.Thread(target=self._run, name="kiosk-feedback", daemon=True)
        self._thread.start()

    # -------------------------------------------------------- public

    def show(self, outcome: TapOutcome) -> None:
        steps = PATTERNS.get(outcome.kind)
        if steps is None:  # REPEAT: leave whatever runs alone
            return
        with self._lock:
            if self._closing:
                return
            self._pending = (str(outcome.kind), steps)
            if outcome.kind == TapKind.ERROR:
                self._alert = False  # the tap's own error sign says it
            self._idle.clear()
            self._cut.set()
            self._wake.set()

    def set_status(self, status: Status) -> None:
        with self._lock:
            if self._closing:
                return
            old, self._status = self._status.health, status
            if status.health == Health.FAULT and old != Health.FAULT:
                error_shown = TapKind.ERROR in (self._playing, self._pending and self._pending[0])
                self._alert = not error_shown
            elif status.health != Health.FAULT:
                self._alert = False
            if status.health != old:
                self._idle.clear()
                self._wake.set()

    @property
    def busy(self) -> bool:
        """True while a pattern plays or a change waits for the worker."""
        return not self._idle.is_set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no pattern plays and the status sign is up to date."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._cut.set()
            self._wake.set()
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.warning("feedback worker did not stop within 5 s; closing the devices anyway")
        for device in (self._lights, self._sound):
            try:
                device.close()
            except Exception:
                log.exception("closing a feedback device failed")
        self._idle.set()

    # -------------------------------------------------------- worker

    def _run(self) -> None:
        sign: Health | None = None  # whose sign is showing
        while True:
            with self._lock:
                if self._closing:
                    break
                self._wake.clear()
                if self._pending is not None:
                    job, self._pending = self._pending, None
                elif self._alert:
                    job, self._alert = ("fault", FAULT_ALERT), False
                else:
                    job = None
                if job is not None:
                    self._cut.clear()
                self._playing = job[0] if job else None
                health = self._status.health
                if job is None and sign == health:
                    self._idle.set()
            try:
                if job is not None:
                    if sign is not None:
                        self._all_off()
                        sign = None
                    log.debug("feedback pattern %s", job[0])
                    self._play(job[1])
                    with self._lock:
                        self._playing = None
                elif sign != health:
                    self._all_off()
                    if health in SIGNS:
                        s = SIGNS[health]
                        self._lights.blink(s.light, s.on * self._scale, s.off * self._scale)
                    sign = health
                else:
                    self._wake.wait()
            except Exception:
                log.exception("feedback output failed")
                sign = None
                self._cut.wait(1.0)  # do not spin on a broken pin
        try:
            self._all_off()
        except Exception:
            log.exception("feedback output failed")

    def _play(self, steps: tuple[Step, ...]) -> None:
        try:
            for step in steps:
                self._set(step.light, step.tone)
                if self._cut.wait(step.seconds * self._scale):
                    break
        finally:
            self._set(OFF, None)

    def _set(self, light: str, tone: str | None) -> None:
        if light != self._light:
            self._lights.show(light)
            self._light = light
        if tone != self._tone:
            self._sound.play(tone)
            self._tone = tone

    def _all_off(self) -> None:
        """Stop a status sign's background blink and silence everything."""
        self._lights.off()
        self._sound.play(None)
        self._light, self._tone = OFF, None
