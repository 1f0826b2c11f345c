"""Feedback devices: tell the person at the door what their tap did.

Every implementation returns from ``show`` at once (patterns run in the
background) and a new ``show`` cuts a running pattern short. ``set_health``
carries the kiosk's ongoing condition (entries waiting offline, or a fault such
as rejected credentials, a dead reader or a store error) for a quiet status sign.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kiosk.rules import TapOutcome


class Health(enum.StrEnum):
    OK = "ok"
    BACKLOG = "backlog"  # entries wait for delivery (offline): quiet sign
    FAULT = "fault"  # credentials rejected, reader down, store error: error sign


@dataclass(frozen=True)
class Status:
    health: Health = Health.OK
    message: str = ""


class Feedback:
    """Base class and the "none" feedback: does nothing."""

    def show(self, outcome: TapOutcome) -> None:
        """Signal a tap's outcome; must not block."""

    def set_status(self, status: Status) -> None:
        """Show the kiosk's ongoing condition; must not block."""

    def close(self) -> None:
        """Release devices."""


def create(settings, **kwargs) -> Feedback:
    """Build the feedback named by ``settings.type`` (config [feedback])."""
    kind = settings.type
    if kind == "none":
        return Feedback()
    if kind == "console":
        from kiosk.feedback.console import ConsoleFeedback

        return ConsoleFeedback(**kwargs)
    if kind == "gpio":
        from kiosk.feedback.gpio import GpioFeedback

        return GpioFeedback(settings)
    raise ValueError(f"unknown feedback type {kind!r}")
