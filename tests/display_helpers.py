"""Shared pieces of the display tests: pinned clocks, outcomes, a display on luma's dummy device."""

from __future__ import annotations

from datetime import datetime, timezone

from kiosk.config import DisplaySettings
from kiosk.rules import TapKind, TapOutcome

UTC = timezone.utc
AT = datetime(2026, 11, 24, 16, 31, 40, tzinfo=UTC)  # a Tuesday
SINCE = datetime(2026, 11, 24, 8, 2, 11, tzinfo=UTC)
ANNA = "04A1B2C3"


def outcome(kind: TapKind, name: str | None = "anna", uid: str = ANNA, **kwargs) -> TapOutcome:
    if kind in (TapKind.CLOCK_OUT, TapKind.TOO_SOON):
        kwargs.setdefault("since", SINCE)
    return TapOutcome(kind, uid, AT, name, **kwargs)


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def display(device=None, *, mono: FakeClock | None = None, hardware=None, kiosk_name: str = "entrance",
            **settings):
    """A DisplayFeedback that draws only when ``step()`` is called, on pinned clocks (16:31 UTC)."""
    from kiosk.feedback.display import DisplayFeedback

    if device is None and hardware is None:
        from luma.core.device import dummy

        size = (settings.get("width") or 128, settings.get("height") or 64)
        device = dummy(width=size[0], height=size[1], rotate=settings.get("rotate", 0), mode="1")
        settings.setdefault("driver", "dummy")
    return DisplayFeedback(DisplaySettings(**settings), kiosk_name=kiosk_name, device=device, hardware=hardware,
                           tz=UTC, now=lambda: AT, monotonic=mono or FakeClock(), start=False)
