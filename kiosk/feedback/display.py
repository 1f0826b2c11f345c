"""The display at the door, through luma: device from settings, its own drawing thread, retries, burn-in care.

``show``, ``set_status`` and ``enrolling`` only note what to show (under a lock
held for a few assignments) and wake the drawing thread: a tap never waits for
I2C or SPI. The thread opens the device (``[display]`` in the config, see
:func:`open_device`), draws the screen that applies (:mod:`kiosk.feedback.screens`)
and writes only when the picture changed:

- a tap's screen for ``tap_seconds`` (longer while a long name scrolls by), then
  the enrolment prompt while one is open, else the idle screen (the clock);
- burn-in care: the idle screen moves by up to ``shift_pixels`` every
  ``shift_seconds``; after ``dim_after_seconds`` without a tap the contrast drops
  to ``dim_contrast``, after ``blank_after_seconds`` the panel is switched off; a
  tap, an enrolment or a new problem wakes it.

A failing display (unplugged, loose wire: every write raises) is logged once per
streak of failures, reported through ``on_health(False, message)``, released and
opened again with backoff (1 s doubling to 60 s); ``on_health(True, "")`` and one
log line when it works again. A write that hangs is noticed by the next call
from the daemon and reported the same way. None of it reaches the tap's thread.

luma (the ``kiosk[display]`` extra) is imported only when a device is opened
(:func:`kiosk.feedback.panels.open_device`). ``KIOSK_DISPLAY_SIM`` runs the
configured driver over simulated buses (:mod:`kiosk.sim.display`), for
benchmarks and end-to-end tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from PIL import Image, ImageOps

from kiosk.feedback import Feedback, Status, screens
from kiosk.feedback.panels import describe_error, logical_size, open_device, release  # noqa: F401 (re-exported)
from kiosk.rules import TapOutcome

log = logging.getLogger(__name__)

BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 60.0
IDLE_TICK = 1.0  # the idle screen is looked at this often (written only when it changed)
WRITE_STUCK = 10.0  # a device call taking longer than this counts as a failure
ACCENTS = {  # colour LCDs: the screen's colour by kind (monochrome panels ignore it)
    "clock_in": (40, 220, 40), "clock_out": (40, 220, 40), "too_soon": (255, 190, 0), "enrol": (0, 200, 255),
    "unknown": (255, 60, 60), "disabled": (255, 60, 60), "invalid": (255, 60, 60), "error": (255, 60, 60),
}


# ---------------------------------------------------------------- pictures


def to_device_mode(image: Image.Image, mode: str, kind: str) -> Image.Image:
    """A rendered (mode "1") screen in the device's colour mode; colour panels get the screen's accent."""
    if mode == "1":
        return image
    colour = ACCENTS.get(kind, (255, 255, 255))
    return ImageOps.colorize(image.convert("L"), black=(0, 0, 0), white=colour).convert(mode)


def _steps(elapsed: float, step: float) -> int:
    """Whole steps of ``step`` seconds in ``elapsed`` (a hair of float error does not lose one)."""
    return int(elapsed / step + 1e-6)


def shift_offsets(pixels: int) -> list[tuple[int, int]]:
    """Where the idle screen goes, in turn: ring by ring around (0, 0), out to ``pixels``."""
    offsets = [(0, 0)]
    for r in range(1, max(0, pixels) + 1):  # clockwise around the square of radius r
        offsets += [(dx, -r) for dx in range(-r, r + 1)] + [(r, dy) for dy in range(-r + 1, r + 1)]
        offsets += [(dx, r) for dx in range(r - 1, -r - 1, -1)] + [(-r, dy) for dy in range(r - 1, -r, -1)]
    return offsets


# ---------------------------------------------------------------- the feedback


@dataclass(slots=True)
class _Tap:
    """The tap being shown: since when, whose card, when last seen (a repeat tap), until when."""

    screen: screens.Screen
    since: float
    uid: str
    seen: float
    until: float


class DisplayFeedback(Feedback):
    """The door display, driven by its own thread.

    ``device``: an already open luma-like device (tests, ``kiosk demo``) used
    instead of opening one from ``settings``; ``opener``: a callable returning a
    device (each retry calls it again); ``tz``/``now``/``monotonic``: the clocks
    (tests pin them); ``start``: run the thread (tests may call :meth:`step`).
    """

    name = "display"

    def __init__(self, settings, *, kiosk_name: str = "kiosk", device=None, opener: Callable | None = None,
                 hardware=None, tz: tzinfo | None = None, now: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, start: bool = True):
        self.settings = settings
        self.kiosk_name = kiosk_name
        self.tz = tz
        self._now = now or (lambda: datetime.now(tz).astimezone(tz))
        self._mono = monotonic
        fonts = screens.Fonts({screens.REGULAR: settings.font or None, screens.BOLD: settings.font or None}) \
            if settings.font else None
        self.renderer = screens.Renderer(logical_size(settings), fonts, inset=settings.shift_pixels)
        self._opener = opener or (lambda: open_device(settings, hardware=hardware))
        self.device = device
        self._given = device is not None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._tap: _Tap | None = None
        self._enrol: str | None = None
        self._status = Status()
        self._active = monotonic()  # the last tap, enrolment or new problem: dim and blank count from here
        self._shift_epoch = monotonic()
        # device state, owned by the thread
        self._last: bytes | None = None
        self._contrast: int | None = None
        self._hidden = False
        self._next_open = 0.0
        self._backoff = BACKOFF_INITIAL
        self._failing = False
        self._ok_since = 0.0
        self._writing_since: float | None = None
        self.failures = 0
        self.frames_written = 0
        self.healthy = True
        self.health_message = ""
        self._health_lock = threading.Lock()
        self._on_health: Callable[[bool, str], None] = lambda ok, message: None
        self._thread = threading.Thread(target=self._run, name="kiosk-display", daemon=True)
        if start:
            self._thread.start()

    # -- the daemon's side: note and wake, never wait

    def show(self, outcome: TapOutcome) -> None:
        self._check_stuck()
        screen = screens.for_outcome(outcome, tz=self.tz, hours=self.settings.clock)
        now = self._mono()
        with self._lock:
            tap = self._tap
            if screen is None:  # a repeat tap: the card is still there, keep its screen a little longer
                if tap is not None and tap.uid == outcome.uid and now < tap.until:
                    tap.seen = now
                return
            # How long a long name needs to scroll by is measured in the drawing thread, not here.
            self._tap = _Tap(screen, now, outcome.uid, now, now + self.settings.tap_seconds)
            self._active = now
        self._wake.set()

    def set_status(self, status: Status) -> None:
        self._check_stuck()
        with self._lock:
            if status.lines() and set(status.lines()) - set(self._status.lines()):
                self._active = self._mono()  # a new problem wakes a dimmed or blank display
            self._status = status
        self._wake.set()

    def enrolling(self, username: str | None) -> None:
        self._check_stuck()
        with self._lock:
            self._enrol = username
            self._active = self._mono()
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.device is not None and not self._given and not self._thread.is_alive():
            device, self.device = self.device, None
            try:
                device.cleanup()  # blank: a frozen picture after the kiosk stopped would lie
            except Exception:
                release(device)

    # -- health

    @property
    def on_health(self) -> Callable[[bool, str], None]:
        return self._on_health

    @on_health.setter
    def on_health(self, callback: Callable[[bool, str], None]) -> None:
        """The thread starts at once: a failure seen before the daemon listened is told on assignment."""
        with self._health_lock:
            self._on_health = callback
            ok, message = self.healthy, self.health_message
        if not ok:
            callback(ok, message)

    def _set_health(self, ok: bool, message: str = "") -> None:
        with self._health_lock:
            if ok == self.healthy and message == self.health_message:
                return
            self.healthy, self.health_message = ok, message
            callback = self._on_health
        try:
            callback(ok, message)
        except Exception:
            log.exception("display: the health callback failed")

    def _check_stuck(self) -> None:
        since = self._writing_since
        if since is not None and self._mono() - since > WRITE_STUCK and self.healthy:
            message = f"display: {self.settings.driver} write hangs for {self._mono() - since:.0f}s"
            log.error("%s", message)
            self._set_health(False, message)

    def _failed(self, exc: BaseException, what: str) -> None:
        self.failures += 1
        message, _ = describe_error(exc, self.settings)
        if not self._failing:
            self._failing = True
            log.error("display: %s failed: %s (retrying, up to every %gs)", what, message, BACKOFF_MAX)
        else:
            log.debug("display: %s failed again: %s", what, message)
        self._set_health(False, f"display: {message}")
        if self.device is not None and not self._given:
            release(self.device)
            self.device = None
        self._next_open = self._mono() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _recovered(self) -> None:
        now = self._mono()
        if self._failing:
            log.info("display: works again (after %d failed attempts)", self.failures)
            self._failing = False
            self._ok_since = now
            self._set_health(True, "")
        elif self._backoff > BACKOFF_INITIAL and now - self._ok_since >= BACKOFF_MAX:
            self._backoff = BACKOFF_INITIAL  # only once it has worked a while: a flapping display backs off

    # -- the thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except BaseException as exc:  # never let the thread die: a bug here must not stop the display for good
                if isinstance(exc, SystemExit):  # luma's pygame window was closed
                    log.info("display window closed")
                    return
                log.exception("display: drawing failed")
                wait = BACKOFF_MAX
            self._wake.wait(wait)
            self._wake.clear()

    def _until(self, tap: _Tap) -> float:
        """When ``tap``'s screen ends: after tap_seconds, after a long name has scrolled by, or
        tap_seconds after a repeat tap of the same card."""
        frames = self.renderer.frames(tap.screen)
        duration = self.settings.tap_seconds
        if frames > 1:
            duration = max(duration, frames * self.renderer.frame_seconds(tap.screen) + 1.0)
        until = max(tap.since + duration, tap.seen + self.settings.tap_seconds)
        with self._lock:
            tap.until = until
        return until

    def current(self) -> tuple[screens.Screen, int, tuple[int, int], str]:
        """What to show now: (screen, frame, offset, level); level is on, dim or blank."""
        now = self._mono()
        with self._lock:
            tap, enrol, status, active = self._tap, self._enrol, self._status, self._active
        until = self._until(tap) if tap is not None else 0.0
        if tap is not None and now < until:
            screen, since = tap.screen, tap.since
            frame = min(_steps(now - since, self.renderer.frame_seconds(screen)), self.renderer.frames(screen) - 1)
            return screen, frame, (0, 0), "on"
        if enrol is not None:
            screen = screens.enrolment(enrol)
            frames = self.renderer.frames(screen)
            return screen, _steps(now - active, self.renderer.frame_seconds(screen)) % frames, (0, 0), "on"
        screen = screens.idle(self._now(), self.kiosk_name, status, hours=self.settings.clock)
        frame = int(now / screens.STATUS_SECONDS) % max(1, len(screen.status))
        offset = (0, 0)
        if self.settings.shift_pixels and self.settings.shift_seconds:
            offsets = shift_offsets(self.settings.shift_pixels)
            offset = offsets[_steps(now - self._shift_epoch, self.settings.shift_seconds) % len(offsets)]
        active = max(active, until)
        idle_for = now - active
        s = self.settings
        if s.blank_after_seconds and idle_for >= s.blank_after_seconds:
            return screen, frame, offset, "blank"
        if s.dim_after_seconds and idle_for >= s.dim_after_seconds:
            return screen, frame, offset, "dim"
        return screen, frame, offset, "on"

    def step(self) -> float:
        """Open the device if due, draw what applies now; return the seconds until the next look."""
        now = self._mono()
        if now < self._next_open:  # backing off after a failure
            return min(self._next_open - now, IDLE_TICK)
        if self.device is None:
            self._writing_since = now  # opening writes the panel's set-up: it may hang too
            try:
                self.device = self._opener()
            except Exception as exc:
                self._failed(exc, "opening")
                return min(self._next_open - now, IDLE_TICK)
            finally:
                self._writing_since = None
            self._last, self._contrast, self._hidden = None, None, False
            if tuple(self.device.size) != self.renderer.size:
                self.renderer = screens.Renderer(tuple(self.device.size), self.renderer.fonts,
                                                 inset=self.settings.shift_pixels)
        screen, frame, offset, level = self.current()
        try:
            tick = getattr(self.device, "tick", None)  # a desktop window answers its events
            if tick is not None:
                tick()
            self._present(screen, frame, offset, level)
        except Exception as exc:
            self._failed(exc, "writing")
            return min(self._next_open - self._mono(), IDLE_TICK)
        self._recovered()
        return self._next_look(screen)

    def _next_look(self, screen: screens.Screen) -> float:
        with self._lock:
            tap = self._tap
        now = self._mono()
        if screen.kind != "idle":
            wait = self.renderer.frame_seconds(screen) if self.renderer.frames(screen) > 1 else IDLE_TICK
            if tap is not None and tap.until > now:
                wait = min(wait, tap.until - now)
            return max(0.01, wait)
        return IDLE_TICK

    def _present(self, screen: screens.Screen, frame: int, offset: tuple[int, int], level: str) -> None:
        device = self.device
        self._writing_since = self._mono()
        try:
            backlight = getattr(device, "backlight", None)  # an LCD: off with the panel
            if level == "blank":
                if not self._hidden:
                    device.hide()
                    if callable(backlight):
                        backlight(False)
                    self._hidden = True
                return
            if self._hidden:
                device.show()
                if callable(backlight):
                    backlight(True)
                self._hidden = False
            contrast = self.settings.contrast if level == "on" else self.settings.dim_contrast
            if contrast != self._contrast:
                device.contrast(contrast)
                self._contrast = contrast
            image = self.renderer.render(screen, frame, offset)
            picture = image.tobytes()
            if picture != self._last:
                if hasattr(device, "caption"):
                    device.caption = screen.kind  # numbered PNG files carry the screen's name
                device.display(to_device_mode(image, device.mode, screen.kind))
                self._last = picture
                self.frames_written += 1
        finally:
            self._writing_since = None
