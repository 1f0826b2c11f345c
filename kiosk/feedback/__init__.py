"""Feedback devices: tell the person at the door what their tap did.

Every implementation returns from ``show`` at once (patterns run in the
background) and a new ``show`` cuts a running pattern short. ``set_status``
carries the kiosk's ongoing condition (entries waiting offline, or a fault such
as rejected credentials, a dead reader or a store error) for a quiet status sign.

Two optional hooks, which the base class implements as "do nothing":

- ``on_health(ok, message)``: the feedback device calls it when it fails or
  recovers (a display unplugged from I2C), as :attr:`kiosk.readers.Reader.on_health`
  does for readers; the daemon replaces it with its own callback.
- ``enrolling(username)``: a sysadmin's enrol-by-tap request waits for a badge for
  ``username`` (a display says "Tap the new badge for <name>"); None ends it.

``feedback.devices = ["gpio", "display"]`` combines several devices
(:class:`kiosk.feedback.multi.MultiFeedback`); ``feedback.type`` names one.

    >>> feedback = create(settings)                        # doctest: +SKIP
    >>> feedback.show(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", now, "anna"))   # returns at once
    >>> feedback.set_status(Status(Health.BACKLOG, "entries waiting for delivery", queued=12))
    >>> feedback.close()
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kiosk.rules import TapOutcome

KINDS = ("gpio", "console", "display", "none")


class Health(enum.StrEnum):
    OK = "ok"
    BACKLOG = "backlog"  # entries wait for delivery (offline): quiet sign
    FAULT = "fault"  # credentials rejected, reader down, store error: error sign


@dataclass(frozen=True)
class Status:
    """The kiosk's ongoing condition.

    ``problems`` names each current fault on its own ("reader down", "clock
    unsynced", "credentials rejected"); ``queued`` is the number of entries
    waiting for delivery (0: unknown or none). Both are optional: devices that
    only know ``health`` and ``message`` ignore them.
    """

    health: Health = Health.OK
    message: str = ""
    queued: int = 0
    problems: tuple[str, ...] = ()

    def lines(self) -> tuple[str, ...]:
        """The problems to show one by one: ``problems``, else (a fault) the parts of ``message`` (joined by "; ")."""
        if self.problems:
            return self.problems
        if self.health is not Health.FAULT or not self.message:
            return ()
        return tuple(part.strip() for part in self.message.split("; ") if part.strip())


class Feedback:
    """Base class and the "none" feedback: does nothing."""

    name = "none"

    def show(self, outcome: TapOutcome) -> None:
        """Signal a tap's outcome; must not block."""

    def set_status(self, status: Status) -> None:
        """Show the kiosk's ongoing condition; must not block."""

    def enrolling(self, username: str | None) -> None:
        """A badge for ``username`` is being enrolled by tap (None: no longer); must not block."""

    def on_health(self, ok: bool, message: str) -> None:
        """Called by the device when it fails (``ok`` False) or recovers; the daemon assigns its own."""

    def close(self) -> None:
        """Release devices."""


def kinds(settings) -> tuple[str, ...]:
    """The feedback kinds configured: ``feedback.devices`` when set, else ``(feedback.type,)``.

    ``settings`` is the whole :class:`kiosk.config.Settings` or its ``feedback`` section.
    """
    section = getattr(settings, "feedback", settings)
    devices = tuple(getattr(section, "devices", ()) or ())
    return devices or (section.type,)


def create(settings, **kwargs) -> Feedback:
    """Build the feedback that the configuration names (one device, or several combined).

    ``settings`` is the whole :class:`kiosk.config.Settings` (needed for a display:
    its ``[display]`` section and the kiosk's name) or, as before, only its
    ``feedback`` section. ``kwargs`` go to the console feedback (e.g. ``stream``).
    A device that cannot be set up (GPIO) raises; the devices built before it are closed.
    """
    wanted = [kind for kind in kinds(settings) if kind != "none"]
    built: list[Feedback] = []
    try:
        for kind in wanted:
            built.append(_create_one(kind, settings, kwargs))
    except BaseException:
        for device in built:
            try:
                device.close()
            except Exception:
                pass
        raise
    if not built:
        return Feedback()
    if len(built) == 1:
        return built[0]
    from kiosk.feedback.multi import MultiFeedback

    return MultiFeedback(built)


def _create_one(kind: str, settings, kwargs: dict) -> Feedback:
    section = getattr(settings, "feedback", settings)
    if kind == "console":
        from kiosk.feedback.console import ConsoleFeedback

        return ConsoleFeedback(**kwargs)
    if kind == "gpio":
        from kiosk.feedback.gpio import GpioFeedback

        return GpioFeedback(section)
    if kind == "display":
        from kiosk.config import DisplaySettings
        from kiosk.feedback.display import DisplayFeedback

        display = getattr(settings, "display", None) or DisplaySettings()
        kiosk = getattr(settings, "kiosk", None)
        return DisplayFeedback(display, kiosk_name=kiosk.name if kiosk else "kiosk")
    raise ValueError(f"unknown feedback type {kind!r}")
