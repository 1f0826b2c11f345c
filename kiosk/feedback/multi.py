"""Several feedback devices as one: LEDs and buzzer *and* a display (``feedback.devices``).

Each call goes to every device in turn, each inside its own ``try``: a device
that raises is logged (once per streak of failures, not once per tap) and the
others still get the call, so a broken display never silences the LEDs. The
devices' ``show`` already returns at once (their work runs in their own
threads), so fanning out adds no waiting to a tap.

    feedback = MultiFeedback([GpioFeedback(settings.feedback), DisplayFeedback(settings.display)])
    feedback.on_health = lambda ok, message: print(ok, message)   # "display: ..." from the display

The devices' health reports are combined: ``on_health`` gets ok only when every
device that reported is ok, with the failing devices' messages joined by "; ".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from kiosk.feedback import Feedback, Status
from kiosk.rules import TapOutcome

log = logging.getLogger(__name__)


class MultiFeedback(Feedback):
    """Fans ``show``, ``set_status``, ``enrolling`` and ``close`` out to ``devices``."""

    name = "multi"

    def __init__(self, devices: Iterable[Feedback]):
        self.devices = list(devices)
        self._failing: set[tuple[int, str]] = set()  # (device index, method) in a streak of failures
        self._down: dict[int, str] = {}  # device index -> its last failure message
        self._health_lock = threading.Lock()
        self._on_health: Callable[[bool, str], None] = lambda ok, message: None
        for index, device in enumerate(self.devices):
            device.on_health = self._forward(index)

    @property
    def on_health(self) -> Callable[[bool, str], None]:
        return self._on_health

    @on_health.setter
    def on_health(self, callback: Callable[[bool, str], None]) -> None:
        """A device that failed before anyone listened is told on assignment."""
        with self._health_lock:
            self._on_health = callback
            down = self._summary()
        if down:
            callback(False, down)

    def _summary(self) -> str:
        return "; ".join(self._down[i] for i in sorted(self._down))

    def _forward(self, index: int) -> Callable[[bool, str], None]:
        def report(ok: bool, message: str) -> None:
            with self._health_lock:
                if ok:
                    self._down.pop(index, None)
                else:
                    self._down[index] = message or f"{getattr(self.devices[index], 'name', 'feedback')} failing"
                down = self._summary()
                callback = self._on_health
            callback(not down, down or message)

        return report

    def _each(self, method: str, *args) -> None:
        for index, device in enumerate(self.devices):
            key = (index, method)
            try:
                getattr(device, method)(*args)
            except Exception:
                if key not in self._failing:
                    self._failing.add(key)
                    log.exception("%s feedback: %s failed (the other devices go on)",
                                  getattr(device, "name", type(device).__name__), method)
            else:
                if key in self._failing:
                    self._failing.discard(key)
                    log.info("%s feedback: %s works again", getattr(device, "name", type(device).__name__), method)

    def show(self, outcome: TapOutcome) -> None:
        self._each("show", outcome)

    def set_status(self, status: Status) -> None:
        self._each("set_status", status)

    def enrolling(self, username: str | None) -> None:
        self._each("enrolling", username)

    def close(self) -> None:
        self._each("close")
