"""KeyboardReader: real evdev InputEvents through a fake device (a pipe's fd for select).

With write access to /dev/uinput (not on CI) one more test types through a real
uinput device and the real evdev.InputDevice path.
"""

from __future__ import annotations

import functools
import errno
import logging
import os
import queue
import sys
import threading
import time
from collections import deque

import pytest

evdev = pytest.importorskip("evdev")
from evdev import InputEvent, ecodes as e  # noqa: E402

from kiosk import badges, readers  # noqa: E402
from kiosk.config import ConfigError, ReaderSettings  # noqa: E402
from kiosk.readers import keyboard  # noqa: E402
from kiosk.exc import ReaderUnavailable
from kiosk.readers.keyboard import KeyboardReader  # noqa: E402

from . import kioskproc

wait_for = functools.partial(kioskproc.wait_for, timeout=5.0, interval=0.002)  # the suite's one helper, polled fast

PATH = "/dev/input/by-id/usb-Fake_RFID_Reader-event-kbd"
SETTINGS = ReaderSettings(type="keyboard", device=PATH, poll_interval=0.02)


class FakeKeyboard:
    """The parts of evdev.InputDevice the reader uses; events are real InputEvents."""

    def __init__(self, name: str = "Fake RFID Reader", grab_error: int | None = None):
        self.fd, self._wake = os.pipe()
        os.set_blocking(self.fd, False)
        self.name, self.path = name, PATH
        self.grab_error = grab_error
        self._events: deque[InputEvent] = deque()
        self._lock = threading.Lock()
        self.grabbed = self.closed = self.gone = False

    def push(self, events) -> None:
        with self._lock:
            self._events.extend(events)
        os.write(self._wake, b".")

    def unplug(self) -> None:
        self.gone = True
        os.write(self._wake, b"!")  # the fd turns readable, as a vanished device's does

    def read(self):
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        try:
            os.read(self.fd, 4096)
        except BlockingIOError:
            pass
        with self._lock:
            events = list(self._events)
            self._events.clear()
        if not events:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return iter(events)

    def read_one(self):
        with self._lock:
            return self._events.popleft() if self._events else None

    def grab(self) -> None:
        if self.grab_error:
            raise OSError(self.grab_error, os.strerror(self.grab_error))
        if self.grabbed:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True

    def ungrab(self) -> None:
        if not self.grabbed:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.grabbed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)
            os.close(self._wake)
            self.fd = -1

    def capabilities(self):
        return {e.EV_KEY: [e.KEY_0, e.KEY_1, e.KEY_ENTER, e.KEY_LEFTSHIFT]}


class Port:
    """The by-id path: a reader can be plugged in, pulled out and plugged in again."""

    def __init__(self):
        self.current: FakeKeyboard | None = None
        self.error: OSError | None = None
        self.opened: list[FakeKeyboard] = []

    def plug(self, **kwargs) -> FakeKeyboard:
        self.current = FakeKeyboard(**kwargs)
        return self.current

    def unplug(self) -> FakeKeyboard:
        dev, self.current = self.current, None
        dev.unplug()
        return dev

    def open(self) -> FakeKeyboard:
        if self.error is not None:
            raise self.error
        if self.current is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", PATH)
        self.opened.append(self.current)
        return self.current


# ---------------------------------------------------------------- typing

KEYS = {**{d: e.ecodes[f"KEY_{d}"] for d in "0123456789"}, "-": e.KEY_MINUS, ";": e.KEY_SEMICOLON, " ": e.KEY_SPACE}
KEYS.update({c: e.ecodes[f"KEY_{c.upper()}"] for c in "abcdefghijklmnopqrstuvwxyz"})
SHIFTED = {":": ";", "_": "-"}


class Typist:
    """Events as a keyboard sends them: MSC_SCAN, key down/up, SYN_REPORT; Shift around shifted characters."""

    def __init__(self, start: float | None = None, gap: float = 0.004):
        self.t = time.time() if start is None else start
        self.gap = gap

    def _ev(self, etype, code, value) -> InputEvent:
        sec = int(self.t)
        return InputEvent(sec, int(round((self.t - sec) * 1e6)), etype, code, value)

    def key(self, code: int, value: int) -> list[InputEvent]:
        self.t += self.gap
        return [self._ev(e.EV_MSC, e.MSC_SCAN, 0x70000 + code), self._ev(e.EV_KEY, code, value), self._ev(e.EV_SYN, e.SYN_REPORT, 0)]

    def tap(self, code: int) -> list[InputEvent]:
        return self.key(code, 1) + self.key(code, 0)

    def type(self, text: str, enter: bool = True, enter_code: int = e.KEY_ENTER) -> list[InputEvent]:
        out: list[InputEvent] = []
        for ch in text:
            shifted = ch.isupper() or ch in SHIFTED
            base = SHIFTED.get(ch, ch.lower())
            if shifted:
                out += self.key(e.KEY_LEFTSHIFT, 1)
            out += self.tap(KEYS[base])
            if shifted:
                out += self.key(e.KEY_LEFTSHIFT, 0)
        if enter:
            out += self.tap(enter_code)
        return out

    def wait(self, seconds: float) -> Typist:
        self.t += seconds
        return self


# ---------------------------------------------------------------- running the reader


class Running:
    """``taps()`` in a thread, as the daemon runs it."""

    def __init__(self, reader: KeyboardReader):
        self.reader = reader
        self.stop = threading.Event()
        self.ids: queue.Queue[str] = queue.Queue()
        self.health: queue.Queue[tuple[bool, str]] = queue.Queue()
        reader.on_health = lambda ok, message: self.health.put((ok, message))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.thread.start()

    def _run(self) -> None:
        try:
            for badge in self.reader.taps(self.stop):
                self.ids.put(badge)
        except BaseException as exc:  # surfaced by halt()
            self.error = exc

    def next_id(self, timeout: float = 5.0) -> str:
        return self.ids.get(timeout=timeout)

    def next_health(self, timeout: float = 5.0) -> tuple[bool, str]:
        return self.health.get(timeout=timeout)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        assert not self.thread.is_alive(), "reader did not stop within 2 s"
        self.reader.close()
        assert self.error is None, self.error


@pytest.fixture
def port():
    return Port()


@pytest.fixture
def run(port):
    started: list[Running] = []

    def _run(reader: KeyboardReader | None = None, **kwargs) -> Running:
        kwargs.setdefault("backoff_initial", 0.01)
        kwargs.setdefault("backoff_max", 0.05)
        r = Running(reader or KeyboardReader(SETTINGS, device=port.open, **kwargs))
        started.append(r)
        return r

    yield _run
    for r in started:
        if r.thread.is_alive():
            r.halt()




# ---------------------------------------------------------------- decoding


def test_digits_and_enter_make_one_id(port, run):
    dev = port.plug()
    r = run()
    assert wait_for(lambda: dev.grabbed)  # typed ids never reach the console
    typist = Typist()
    events = typist.type("32832637", enter=False)
    events += typist.key(KEYS["4"], 1) + typist.key(KEYS["4"], 2) + typist.key(KEYS["4"], 2)  # held: auto-repeat
    events += typist.key(KEYS["4"], 0) + typist.type("8")
    dev.push(events)
    assert r.next_id() == "3283263748"
    assert r.ids.empty()
    r.halt()
    assert dev.closed and not dev.grabbed


def test_each_enter_ends_one_id_and_the_reader_does_not_convert(port, run):
    dev = port.plug()
    r = run()
    typist = Typist()
    dev.push(typist.type("3283263748") + typist.type("0077705923", enter_code=e.KEY_KPENTER))
    first, second = r.next_id(), r.next_id()
    assert (first, second) == ("3283263748", "0077705923")
    # The daemon parses the text; both byte orders name the same badge.
    assert badges.parse(first, "little") == badges.parse(second, "big") == "04A1B2C3"


def test_keypad_digits(port, run):
    dev = port.plug()
    r = run()
    typist = Typist()
    events = []
    for d in "0412":
        events += typist.tap(e.ecodes[f"KEY_KP{d}"])
    dev.push(events + typist.tap(e.KEY_KPENTER))
    assert r.next_id() == "0412"


@pytest.mark.parametrize("text", ["04A1B2C3", "04a1b2c3", "04:A1:B2:C3", "04-a1-b2-c3", "0x04A1B2C3D4E580"])
def test_hex_ids_with_shift(text, port, run):
    dev = port.plug()
    r = run()
    dev.push(Typist().type(text))
    assert r.next_id() == text
    assert badges.parse(text) in ("04A1B2C3", "04A1B2C3D4E580")


def test_empty_enter_and_other_keys_are_ignored(port, run):
    dev = port.plug()
    r = run()
    typist = Typist()
    events = typist.tap(e.KEY_ENTER) + typist.type("12", enter=False) + typist.tap(e.KEY_F1) + typist.type("34")
    dev.push(events)
    assert r.next_id() == "1234"
    assert r.ids.empty()


def test_a_partial_id_is_dropped_when_the_next_key_comes_too_late(port, run):
    dev = port.plug()
    r = run()
    typist = Typist()
    # One batch: the kernel's timestamps show 2 s between "12" and "34".
    dev.push(typist.type("12", enter=False) + typist.wait(2.0).type("34"))
    assert r.next_id() == "34"


def test_a_partial_id_times_out_when_no_key_follows(port, run, caplog):
    caplog.set_level(logging.INFO, logger="kiosk.readers.keyboard")
    dev = port.plug()
    r = run(partial_timeout=0.1)
    typist = Typist()
    dev.push(typist.type("12", enter=False))
    assert wait_for(lambda: any("discarded a partial badge id" in rec.getMessage() for rec in caplog.records))
    dev.push(typist.type("34"))  # kernel timestamps close to "12": only the idle timeout could drop it
    assert r.next_id() == "34"


def test_too_long_is_one_invalid_then_reading_goes_on(port, run):
    dev = port.plug()
    r = run()
    typist = Typist()
    dev.push(typist.type("1" * (keyboard.MAX_ID_LENGTH + 1)) + typist.type("99"))
    first = r.next_id()
    assert isinstance(first, readers.Invalid) and "(65 characters)" in first.reason
    assert r.next_id() == "99"


def test_the_tail_of_an_over_long_id_is_not_a_badge(port, run):
    """Issue 7: 100 keys and Enter used to yield the last 35 as an id (here a badge's own spelling)."""
    dev = port.plug()
    r = run()
    typist = Typist()
    junk = "7" * (keyboard.MAX_ID_LENGTH + 1) + "04A1B2C3"
    dev.push(typist.type(junk) + typist.type("04D5E6F7A8B9C0"))
    first = r.next_id()
    assert isinstance(first, readers.Invalid), first
    assert f"({len(junk)} characters)" in first.reason and len(first.reason) < 200
    assert first.shown == "7" * keyboard.SHOW
    assert r.next_id() == "04D5E6F7A8B9C0"
    assert r.ids.empty()


def test_an_over_long_id_cut_off_by_a_pause_is_dropped_without_a_tap(port, run):
    dev = port.plug()
    r = run()
    typist = Typist()
    dev.push(typist.type("1" * 80, enter=False) + typist.wait(2.0).type("04A1B2C3"))
    assert r.next_id() == "04A1B2C3"  # nobody finished typing the long one: no INVALID for it


def test_dropped_events_discard_the_partial_id(port, run):
    dev = port.plug()
    r = run()
    typist = Typist()
    dropped = [InputEvent(int(typist.t), 0, e.EV_SYN, e.SYN_DROPPED, 0)]
    dev.push(typist.type("12", enter=False) + dropped + typist.type("34"))
    assert r.next_id() == "34"


# ---------------------------------------------------------------- connection


def test_unplugged_reader_is_reopened_when_it_returns(port, run):
    first = port.plug()
    r = run()
    assert wait_for(lambda: first.grabbed)
    typist = Typist()
    first.push(typist.type("11"))
    assert r.next_id() == "11"
    first.push(typist.type("12", enter=False))  # half a badge, then the cable is pulled
    assert wait_for(lambda: not first._events)
    port.unplug()
    ok, message = r.next_health()
    assert not ok and PATH in message and "disconnected" in message
    assert wait_for(lambda: first.closed)
    assert not first.grabbed
    ok, message = r.next_health()  # retries with backoff find nothing yet
    assert not ok and "not connected" in message
    second = port.plug()
    assert r.next_health() == (True, "")
    assert second.grabbed
    second.push(typist.type("34"))
    assert r.next_id() == "34"  # nothing of the half badge before the unplug
    assert port.opened.count(second) == 1


def test_not_connected_at_start_then_plugged_in(port, run):
    r = run()
    ok, message = r.next_health()
    assert not ok and "not connected" in message
    dev = port.plug()
    assert r.next_health() == (True, "")
    dev.push(Typist().type("3283263748"))
    assert r.next_id() == "3283263748"


def test_permission_denied_says_what_to_do(port, run):
    port.error = PermissionError(errno.EACCES, "Permission denied", PATH)
    r = run()
    ok, message = r.next_health()
    assert not ok and "permission denied" in message and "group input" in message
    port.error = None
    port.plug()
    assert r.next_health() == (True, "")


def test_a_device_grabbed_by_another_program_is_retried(port, run):
    busy = port.plug(grab_error=errno.EBUSY)
    r = run()
    ok, message = r.next_health()
    assert not ok and "cannot grab it exclusively" in message
    assert wait_for(lambda: busy.closed)
    port.plug()
    assert r.next_health() == (True, "")


def test_a_device_object_is_used_first(port):
    dev = FakeKeyboard()
    r = Running(KeyboardReader(SETTINGS, device=dev))
    dev.push(Typist().type("42"))
    assert r.next_id() == "42"
    r.halt()
    assert dev.closed and not dev.grabbed


def test_stop_ends_taps_promptly_while_waiting_for_keys(port, run):
    dev = port.plug()
    r = run()
    assert wait_for(lambda: dev.grabbed)
    r.halt()  # joins within 2 s
    assert dev.closed and not dev.grabbed


def test_stop_ends_taps_promptly_during_backoff(run):
    r = run(backoff_initial=60, backoff_max=60)  # nothing plugged: waits 60 s between tries
    ok, _ = r.next_health()
    assert not ok
    r.halt()


def test_close_releases_the_device(port):
    dev = port.plug()
    reader = KeyboardReader(SETTINGS, device=port.open)
    r = Running(reader)
    assert wait_for(lambda: dev.grabbed)
    reader.close()  # e.g. the daemon shutting down
    assert wait_for(lambda: dev.closed)
    r.stop.set()
    r.thread.join(2)
    assert not r.thread.is_alive() and r.error is None
    assert not dev.grabbed


# ---------------------------------------------------------------- setup errors and the real evdev path


def test_missing_evdev_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "evdev", None)
    with pytest.raises(ReaderUnavailable, match=r"python-evdev.*pip install 'kiosk\[keyboard\]'"):
        KeyboardReader(SETTINGS)


def test_device_path_is_required():
    with pytest.raises(ConfigError, match=r"reader.device: required"):
        KeyboardReader(ReaderSettings(type="keyboard"))


def test_create_builds_the_keyboard_reader():
    assert isinstance(readers.create(SETTINGS), KeyboardReader)


def test_real_evdev_path_that_is_missing(tmp_path, run):
    missing = ReaderSettings(type="keyboard", device=str(tmp_path / "usb-Nothing-event-kbd"), poll_interval=0.02)
    r = run(KeyboardReader(missing, backoff_initial=0.01))
    ok, message = r.next_health()
    assert not ok and "not connected" in message and "usb-Nothing-event-kbd" in message


def test_real_evdev_path_that_is_not_an_input_device(run):
    r = run(KeyboardReader(ReaderSettings(type="keyboard", device="/dev/null"), backoff_initial=0.01))
    ok, message = r.next_health()
    assert not ok and "/dev/null: cannot open" in message


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK), reason="needs write access to /dev/uinput")
def test_real_uinput_keyboard(run):
    from evdev import UInput

    keys = [*KEYS.values(), e.KEY_ENTER, e.KEY_KPENTER, e.KEY_LEFTSHIFT]
    with UInput({e.EV_KEY: keys}, name="kiosk-test-reader") as ui:
        time.sleep(0.2)  # udev creates the event node
        r = run(KeyboardReader(ReaderSettings(type="keyboard", device=ui.device.path, poll_interval=0.02)))
        assert r.next_health() == (True, "")
        for ch in "04A1B2C3":
            if ch.isupper():
                ui.write(e.EV_KEY, e.KEY_LEFTSHIFT, 1)
            ui.write(e.EV_KEY, KEYS[ch.lower()], 1)
            ui.write(e.EV_KEY, KEYS[ch.lower()], 0)
            if ch.isupper():
                ui.write(e.EV_KEY, e.KEY_LEFTSHIFT, 0)
            ui.syn()
        ui.write(e.EV_KEY, e.KEY_ENTER, 1)
        ui.write(e.EV_KEY, e.KEY_ENTER, 0)
        ui.syn()
        assert r.next_id() == "04A1B2C3"
