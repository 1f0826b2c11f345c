"""USB keyboard-wedge badge reader (``[reader] type = "keyboard"``), via python-evdev.

Such readers pretend to be a keyboard: on each tap they type the badge id
(usually 10 decimal digits, or hex) and press Enter. The kiosk opens the
reader's own event device, ``reader.device`` (a stable
``/dev/input/by-id/usb-...-event-kbd`` path), and grabs it exclusively so the
typed ids never reach a console or another program.

Decoding: key-down events of digits, letters (Shift gives upper case), ``-``,
``:`` and space are collected; Enter or keypad Enter ends an id. Key-up and
auto-repeat events are ignored. A partial id is discarded when no key follows
within ``partial_timeout`` (1 s), so a half-read badge never glues onto the next
one. The reader yields the text as typed: the daemon parses it with
:func:`kiosk.badges.parse` (``[badges] decimal_byte_order`` applies there).

Bounded input, as with the stdin reader: an id that grows past
:data:`MAX_ID_LENGTH` characters is not kept; the keys up to its Enter are
counted and dropped, and the Enter yields exactly one
:class:`~kiosk.readers.Invalid` (one ``INVALID`` tap, the first characters
shown). A partial id that is cut off (no key within ``partial_timeout``, or the
kernel dropped events) is discarded with a log line and no tap: nobody finished
typing it.

When the device disappears (unplugged, USB reset) the reader reports itself
unhealthy and reopens the path with backoff until it is back. Needs read access
to the device: run the kiosk as a member of group ``input``.
"""

from __future__ import annotations

import errno
import functools
import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kiosk.exc import Cause, ReaderUnavailable
from kiosk.readers import Invalid, Reader
from kiosk.text import escape

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 64  # characters (kiosk.badges.MAX_INPUT); a longer id is one Invalid at its Enter
SHOW = 24  # characters of an over-long id shown


def _import_evdev():
    try:
        import evdev
    except ImportError as exc:
        raise ReaderUnavailable(
            'reader.type = "keyboard" needs python-evdev, which is not installed: '
            "pip install 'kiosk[keyboard]' (or evdev>=1.6) in the kiosk's venv, "
            f"or apt install python3-evdev ({exc})", Cause.MISSING_PACKAGE
        ) from None
    return evdev


@functools.lru_cache(maxsize=1)
def _keymap() -> tuple[dict[int, tuple[str, str]], frozenset[int], frozenset[int]]:
    """(key code -> (plain, shifted) character, Enter codes, Shift codes)."""
    e = _import_evdev().ecodes
    keys: dict[int, tuple[str, str]] = {}
    for d in "0123456789":
        keys[e.ecodes[f"KEY_{d}"]] = (d, d)
        keys[e.ecodes[f"KEY_KP{d}"]] = (d, d)
    for c in "abcdefghijklmnopqrstuvwxyz":
        keys[e.ecodes[f"KEY_{c.upper()}"]] = (c, c.upper())
    keys[e.KEY_MINUS] = ("-", "_")
    keys[e.KEY_KPMINUS] = ("-", "-")
    keys[e.KEY_SEMICOLON] = (";", ":")
    keys[e.KEY_SPACE] = (" ", " ")
    return keys, frozenset({e.KEY_ENTER, e.KEY_KPENTER}), frozenset({e.KEY_LEFTSHIFT, e.KEY_RIGHTSHIFT})


class _Decoder:
    """Key events -> badge ids; one per reader connection."""

    def __init__(self, partial_timeout: float) -> None:
        e = _import_evdev().ecodes
        self.EV_KEY, self.EV_SYN, self.SYN_DROPPED = e.EV_KEY, e.EV_SYN, e.SYN_DROPPED
        self.keys, self.enter, self.shift_keys = _keymap()
        self.timeout = partial_timeout
        self.chars: list[str] = []
        self.overlong: tuple[str, int] | None = None  # (first characters, count) of an id past MAX_ID_LENGTH
        self.shift: set[int] = set()
        self.last_stamp: float | None = None  # kernel timestamp of the last key
        self.last_seen = 0.0  # monotonic time the last key was handled

    def discard(self, why: str) -> None:
        if self.chars or self.overlong:
            count = self.overlong[1] if self.overlong else len(self.chars)
            log.info("discarded a partial badge id (%d characters): %s", count, why)
        self.chars.clear()
        self.overlong = None

    def expire(self, now: float) -> None:
        """Called when no events are pending: drop a partial id that has waited too long."""
        if (self.chars or self.overlong) and now - self.last_seen >= self.timeout:
            self.discard(f"no key for {self.timeout:g} s")

    def feed(self, event, now: float) -> str | Invalid | None:
        if event.type == self.EV_SYN and event.code == self.SYN_DROPPED:
            # The kernel's buffer overflowed: keys were lost, the id cannot be trusted.
            self.discard("input events were dropped")
            self.shift.clear()
            return None
        if event.type != self.EV_KEY:
            return None
        code, value = event.code, event.value
        if code in self.shift_keys:
            if value == 1:
                self.shift.add(code)
            elif value == 0:
                self.shift.discard(code)
            return None
        if value != 1:  # 0: key up, 2: auto-repeat
            return None
        stamp = event.timestamp()
        if (self.chars or self.overlong) and self.last_stamp is not None and stamp - self.last_stamp > self.timeout:
            self.discard(f"{stamp - self.last_stamp:.1f} s between two keys")
        self.last_stamp, self.last_seen = stamp, now
        if code in self.enter:
            return self._enter()
        chars = self.keys.get(code)
        if chars is None:
            log.debug("ignored key code %d", code)
            return None
        char = chars[1] if self.shift else chars[0]
        if self.overlong is not None:
            self.overlong = (self.overlong[0], self.overlong[1] + 1)
        elif len(self.chars) >= MAX_ID_LENGTH:  # not a badge id: count the rest, keep nothing
            self.overlong = ("".join(self.chars[:SHOW]), len(self.chars) + 1)
            self.chars.clear()
        else:
            self.chars.append(char)
        return None

    def _enter(self) -> str | Invalid | None:
        if self.overlong is not None:
            head, count = self.overlong
            self.overlong = None
            shown = escape(head)
            return Invalid(shown, f"'{shown}…' ({count} characters): an id over {MAX_ID_LENGTH} characters "
                                  "is not a badge id; discarded")
        text = "".join(self.chars)
        self.chars.clear()
        return text or None


class KeyboardReader(Reader):
    """Badge ids typed by a USB keyboard-wedge reader on ``settings.device``.

    Ids are yielded as typed and parsed by the daemon. ``device`` replaces
    opening ``settings.device`` with evdev: either a device object (used for
    the first connection; reconnects open ``settings.device``) or a callable
    returning a new one on each (re)connect. A device needs ``fd``, ``read()``,
    ``grab()``, ``ungrab()``, ``close()`` and ``capabilities()`` as evdev's
    InputDevice has::

        reader = KeyboardReader(ReaderSettings(type="keyboard",
                                               device="/dev/input/by-id/usb-RFID_Reader-event-kbd"))
        reader.on_health = lambda ok, message: print("reader", "ok" if ok else message)
        stop = threading.Event()
        for tap in reader.taps(stop):     # "3283263748" as typed, or a readers.Invalid
            print(badges.parse(tap) if isinstance(tap, str) else tap.reason)
        reader.close()
    """

    name = "keyboard"

    def __init__(
        self,
        settings,
        *,
        device: Any = None,
        partial_timeout: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
    ) -> None:
        super().__init__()
        self.evdev = _import_evdev()
        self.path: str = settings.device
        if device is None and not self.path:
            from kiosk.config import ConfigError

            raise ConfigError(
                None, "reader.device",
                'required for reader.type = "keyboard": the reader\'s /dev/input/by-id/...-event-kbd path',
            )
        self.partial_timeout = partial_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = max(backoff_max, backoff_initial)
        self.tick = min(max(settings.poll_interval, 0.01), 0.5)  # how often stop is checked
        self._opener: Callable[[], Any] | None = device if callable(device) else None
        self._first: Any = None if callable(device) else device
        self._lock = threading.Lock()
        self._dev: Any = None
        self._closed = False

    # -------------------------------------------------------- public

    def taps(self, stop: threading.Event) -> Iterator[str | Invalid]:
        """Each id as typed (text for the daemon to parse), or one Invalid for an over-long one, until ``stop``.

        Reconnects with backoff while the device is gone; health goes to ``on_health``.
        """
        delay = self.backoff_initial
        while not stop.is_set() and not self._closed:
            dev = self._connect()
            if dev is None:
                stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = self.backoff_initial
            try:
                yield from self._ids(dev, stop)
            except OSError as exc:
                if not self._closed:
                    self._unhealthy(f"{self._where(dev)}: disconnected ({exc.strerror or exc}); waiting for it to return")
            finally:
                self._release(dev)

    def close(self) -> None:
        """Release the device; a running ``taps()`` ends (set its stop event first)."""
        self._closed = True
        with self._lock:
            dev, self._dev = self._dev, None
        if dev is not None:
            self._release(dev)

    # -------------------------------------------------------- internals

    def _where(self, dev: Any = None) -> str:
        return f"keyboard reader {self.path or getattr(dev, 'path', None) or repr(dev)}"

    def _unhealthy(self, message: str) -> None:
        if message != self.health_message or self.healthy:
            log.warning("%s", message)
        self._set_health(False, message)

    def _open(self) -> Any:
        if self._first is not None:
            dev, self._first = self._first, None
            return dev
        if self._opener is not None:
            return self._opener()
        if not self.path:
            raise FileNotFoundError(errno.ENOENT, "no reader.device path to reopen")
        return self.evdev.InputDevice(self.path)

    def _connect(self) -> Any:
        where = self._where()
        try:
            dev = self._open()
        except FileNotFoundError:
            self._unhealthy(f"{where}: not connected (no such device); waiting for it")
            return None
        except PermissionError:
            self._unhealthy(f"{where}: permission denied; the kiosk user needs group input (or a udev rule)")
            return None
        except OSError as exc:
            self._unhealthy(f"{where}: cannot open ({exc.strerror or exc})")
            return None
        try:
            dev.grab()
        except OSError as exc:
            self._close_quietly(dev)
            self._unhealthy(f"{where}: cannot grab it exclusively ({exc.strerror or exc}); is another program using it?")
            return None
        with self._lock:
            if self._closed:
                self._close_quietly(dev)
                return None
            self._dev = dev
        self._check_keyboard(dev)
        log.info("%s: connected (%s)", where, getattr(dev, "name", "") or "unnamed device")
        self._set_health(True, "")
        return dev

    def _check_keyboard(self, dev: Any) -> None:
        e = self.evdev.ecodes
        try:
            keys = dev.capabilities().get(e.EV_KEY, [])
        except (OSError, AttributeError):
            return
        if e.KEY_ENTER not in keys and e.KEY_KPENTER not in keys:
            log.warning("%s has no Enter key: is reader.device the reader's -event-kbd device?", self._where(dev))

    def _ids(self, dev: Any, stop: threading.Event) -> Iterator[str | Invalid]:
        decoder = _Decoder(self.partial_timeout)
        while not stop.is_set():
            try:
                ready, _, _ = select.select([dev.fd], [], [], self.tick)
            except (ValueError, OSError) as exc:  # fd closed under us (close()) or gone
                if self._closed:
                    return
                raise OSError(getattr(exc, "errno", None) or errno.EBADF, str(exc)) from exc
            if not ready:
                decoder.expire(time.monotonic())
                continue
            try:
                events = list(dev.read())
            except BlockingIOError:
                continue
            for event in events:
                badge = decoder.feed(event, time.monotonic())
                if badge is not None:
                    yield badge
        decoder.discard("reader stopped")

    def _release(self, dev: Any) -> None:
        with self._lock:
            if self._dev is dev:
                self._dev = None
        try:
            dev.ungrab()
        except (OSError, ValueError, AttributeError):
            pass
        self._close_quietly(dev)

    @staticmethod
    def _close_quietly(dev: Any) -> None:
        try:
            dev.close()
        except (OSError, ValueError, AttributeError):
            pass

