"""Badge readers: sources of taps.

A reader yields one string per tap from ``taps(stop)`` until ``stop`` is set or
its input ends. Hardware readers yield canonical badge ids (uppercase hex UID
bytes); text readers (stdin) yield what was typed, and the daemon parses it with
:func:`kiosk.badges.parse`. A reader reports its own health (e.g. "reader not
answering") through ``on_health(ok, message)`` so the daemon can show it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator


class Reader:
    """Base class for readers."""

    name = "reader"

    def __init__(self) -> None:
        self.on_health: Callable[[bool, str], None] = lambda ok, message: None
        self.healthy = True
        self.health_message = ""

    def _set_health(self, ok: bool, message: str = "") -> None:
        if ok != self.healthy or message != self.health_message:
            self.healthy, self.health_message = ok, message
            self.on_health(ok, message)

    def taps(self, stop: threading.Event) -> Iterator[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device."""


def create(settings, **kwargs) -> Reader:
    """Build the reader named by ``settings.type`` (config [reader])."""
    kind = settings.type
    if kind == "stdin":
        from kiosk.readers.stdin import StdinReader

        return StdinReader(**kwargs)
    if kind == "mfrc522":
        from kiosk.readers.mfrc522 import Mfrc522Reader

        return Mfrc522Reader(settings)
    if kind == "keyboard":
        from kiosk.readers.keyboard import KeyboardReader

        return KeyboardReader(settings)
    raise ValueError(f"unknown reader type {kind!r}")
