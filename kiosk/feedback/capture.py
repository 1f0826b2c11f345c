"""Displays without a panel, for ``kiosk demo``: numbered PNG files, or a desktop window.

Both are luma devices (luma's own ``dummy`` and the pygame emulator of
``luma.emulator``), so :class:`kiosk.feedback.display.DisplayFeedback` drives
them exactly as it drives an OLED::

    device = png_device("/tmp/screens", (128, 64))   # 0001-idle.png, 0002-clock_in.png, ...
    feedback = DisplayFeedback(settings.display, device=device)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kiosk.exc import Cause, DisplayUnavailable

_NUMBERED = re.compile(r"^(\d{4,})")


def _missing(package: str, extra: str) -> DisplayUnavailable:
    return DisplayUnavailable(f"{package} is not installed (the kiosk[{extra}] extra: pip install -e '.[{extra}]' "
                              "in a checkout)", Cause.MISSING_PACKAGE)


def png_device(directory: str | Path, size: tuple[int, int]):
    """A luma dummy device that also writes each picture to ``directory`` as ``NNNN-<screen>.png``.

    Numbering goes on after the highest number already there, so nothing is overwritten.
    """
    try:
        from luma.core.device import dummy
    except ImportError:
        raise _missing("luma.core", "display") from None

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in folder.glob("*.png") if (m := _NUMBERED.match(p.name))]

    class PngDevice(dummy):
        caption = "screen"  # DisplayFeedback names the screen being drawn

        def __init__(self):
            super().__init__(width=size[0], height=size[1], mode="1")
            self.count = max(taken, default=0)
            self.written: list[Path] = []

        def display(self, image):
            super().display(image)
            self.count += 1
            path = folder / f"{self.count:04d}-{self.caption}.png"
            self.image.save(path)
            self.written.append(path)

        def cleanup(self):  # keep the last picture: no blank frame at exit
            pass

    return PngDevice()


def window_device(size: tuple[int, int], *, scale: int = 4):
    """luma.emulator's pygame window, ``scale`` times the panel's size; closing it raises SystemExit
    in the drawing thread (which then stops drawing). Raises DisplayUnavailable without pygame or a desktop."""
    if not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")):
        raise DisplayUnavailable("no desktop to open a window on (DISPLAY is not set): try --display-png DIR",
                                 Cause.DEVICE_MISSING)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no greeting on the demo's console
    try:
        from luma.emulator.device import pygame as pygame_device
    except ImportError:
        raise _missing("luma.emulator (and pygame)", "display,emulator") from None
    try:
        device = pygame_device(width=size[0], height=size[1], mode="1", transform="identity", scale=scale)
    except Exception as exc:  # no video device: SDL's error
        raise DisplayUnavailable(f"cannot open a display window: {exc}", Cause.DEVICE_MISSING) from None
    device._pygame.display.set_caption("kiosk display")

    def tick():
        """Keep the window answering between pictures; notice it being closed."""
        device._pygame.event.pump()
        if device._abort():
            device._pygame.quit()
            raise SystemExit

    device.tick = tick
    return device
