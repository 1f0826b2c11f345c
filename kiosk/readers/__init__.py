"""Badge readers: sources of taps.

A reader yields one item per tap from ``taps(stop)`` until ``stop`` is set or
its input ends:

- ``bytes``: the UID bytes, from a reader that reads bytes (the RC522); nothing
  is guessed, :func:`kiosk.badges.from_bytes` makes the canonical id;
- ``str``: what a text reader (stdin, a keyboard-wedge reader) received, which
  the daemon parses with :func:`kiosk.badges.parse`;
- :class:`Invalid`: input the reader itself refused (a line over its length
  cap, undecodable bytes); the daemon records one ``INVALID`` tap for it.
 A reader reports its own health (e.g. "reader not
answering") through ``on_health(ok, message)`` so the daemon can show it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Invalid:
    """Reader input that is not a badge id, already judged by the reader.

    ``shown`` is a short, escaped rendering for the audit log and the console
    (never the whole input); ``reason`` says what was wrong with it.
    """

    shown: str
    reason: str


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

    def taps(self, stop: threading.Event) -> Iterator[bytes | str | Invalid]:
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
