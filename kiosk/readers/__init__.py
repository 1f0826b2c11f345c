"""Badge readers: sources of taps.

A reader yields one item per tap from ``taps(stop)`` until ``stop`` is set or
its input ends:

- ``bytes``: the UID bytes, from a reader that reads bytes (the RC522); nothing
  is guessed, :func:`kiosk.badges.from_bytes` makes the canonical id;
- ``str``: what a text reader (stdin, a keyboard-wedge reader) received, which
  the daemon parses with :func:`kiosk.badges.parse`;
- :class:`Invalid`: input the reader itself refused (a line over its length
  cap, undecodable bytes); the daemon records one ``INVALID`` tap for it.

A reader reports its own health (e.g. "reader not answering") through
``on_health(ok, message)`` so the daemon can show it::

    reader = readers.create(settings.reader)          # or StdinReader(), Mfrc522Reader(...), ...
    reader.on_health = lambda ok, message: print("reader", "ok" if ok else message)
    stop = threading.Event()
    for tap in reader.taps(stop):
        if isinstance(tap, bytes):
            uid = badges.from_bytes(tap)               # b"\\x04\\xa1\\xb2\\xc3" -> "04A1B2C3"
        elif isinstance(tap, str):
            uid = badges.parse(tap)                    # "3283263748" -> "04A1B2C3" (or BadgeIdError)
        else:                                          # readers.Invalid
            print("INVALID", tap.reason)
    reader.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Invalid:
    """Reader input that is not a badge id, already judged by the reader.

    ``shown`` is a short, escaped rendering for the audit log and the console
    (never the whole input); ``reason`` says what was wrong with it, and names
    ``shown`` so it reads on its own:

        >>> Invalid("1111…", "'1111…' (16777216 bytes): a line over 256 bytes is not a badge id")
        Invalid(shown='1111…', reason="'1111…' (16777216 bytes): a line over 256 bytes is not a badge id")
    """

    shown: str
    reason: str


class Reader:
    """Base class for readers: :meth:`taps` yields ``bytes``, ``str`` or :class:`Invalid`; :meth:`close` releases.

    Subclasses call ``_set_health(ok, message)``; the daemon sets
    ``on_health`` to show it (``healthy`` and ``health_message`` keep the last).
    """

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
        """One item per tap until ``stop`` is set or the input ends."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device."""


def create(settings, **kwargs) -> Reader:
    """Build the reader named by ``settings.type`` (config ``[reader]``); ``kwargs`` go to its constructor.

        >>> from kiosk.config import ReaderSettings
        >>> create(ReaderSettings(type="stdin")).name
        'stdin'

    ``create(settings, factory=board)`` builds an RC522 reader over another
    factory (:mod:`kiosk.sim.rc522`); ``create(settings, device=...)`` a
    keyboard reader over a given input device.
    """
    kind = settings.type
    if kind == "stdin":
        from kiosk.readers.stdin import StdinReader

        return StdinReader(**kwargs)
    if kind == "mfrc522":
        from kiosk.readers.mfrc522 import Mfrc522Reader

        return Mfrc522Reader(settings, **kwargs)
    if kind == "keyboard":
        from kiosk.readers.keyboard import KeyboardReader

        return KeyboardReader(settings, **kwargs)
    raise ValueError(f"unknown reader type {kind!r}")
