"""RC522 (NXP MFRC522) RFID reader on SPI: ``[reader] type = "mfrc522"``.

Built on the ``mfrc522`` library (0.0.7), through the driver in
:mod:`kiosk.readers.mfrc522_chip` (which works around the library's defects):

- The parts come from a factory, as gpiozero's devices get their pins from a
  pin factory: ``Mfrc522Reader(settings, factory=...)``, or
  :attr:`Mfrc522Reader.default_factory` (like ``Device.pin_factory``), or else
  a new :class:`PiFactory`. A factory hands over the ``mfrc522`` package, the
  ``RPi.GPIO`` module and new SPI devices; :class:`kiosk.sim.rc522.FakeHardware`
  is the simulated one. The reader opens the SPI device it is given itself
  (the library's constructor would open its own ``spidev.SpiDev``), so nothing
  here reaches for a module by name.
- ``mfrc522`` imports ``RPi.GPIO`` at import time, which raises off a Pi:
  :class:`PiFactory` imports it only when a reader is built, and the failure
  becomes a :class:`ReaderUnavailable` that says what to do.
- ``SimpleMFRC522`` reads only cascade level 1 and keeps the BCC byte, so a
  7-byte UID comes back as 0x88 + 3 bytes. Here each poll runs WUPA, then
  anticollision (bit-oriented, so two cards in the field resolve to one) and
  SELECT at each cascade level until the SAK says the UID is complete, checks
  BCC and CRC_A, and ends with HLTA. A tap is the UID ``bytes`` (4, 7 or 10),
  never text: :func:`kiosk.badges.from_bytes` makes the canonical id, so a
  UID such as ``12345678`` cannot be mistaken for a decimal number.
- The reset pin is always passed (BCM ``reader.reset_pin``). If something
  already set BOARD numbering, the pin is translated.
- :meth:`Mfrc522Reader.close` frees only the reset pin, not every pin of the process.

One tap, one event: a card that stays in the field is read once; it can tap
again after it has been unseen for ``reader.release_seconds`` (a card at the
edge of the field may miss some polls; WUPA also wakes the cards this reader
halted, so a card left on the reader keeps counting as present).

Health: a chip that stops answering (VersionReg reads 0x00/0xFF, no interrupt
from a frame, SPI errors) or that lost its settings (power cycle, brown-out) is
re-initialised; while that fails the reader reports itself unhealthy and
retries with backoff up to :data:`BACKOFF_MAX` seconds, pulsing the reset pin.

(About 400 lines: the factory, presence and health are one state machine around
one poll loop; the chip-level protocol is already apart, in ``mfrc522_chip``.)
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, Protocol

from kiosk.exc import Cause, ReaderUnavailable
from kiosk.readers import Reader
from kiosk.readers.mfrc522_chip import (  # noqa: F401  (TIMEOUT_SECONDS, VERSIONS, crc_a: part of this module's API)
    CASCADE_TAG, COLL_ERR, FATAL_ERRORS, SAK_UID_INCOMPLETE, SEL_CODES, TIMEOUT_SECONDS, VERSIONS, WUPA,
    ChipError, crc_a, driver_class, with_crc,
)

log = logging.getLogger("kiosk.reader")

MAX_ERRORS = 3  # failed polls in a row (each followed by a re-init) before the reader counts as down
MIN_INTERVAL = 0.01  # reader.poll_interval below this would make a busy loop
CHECK_INTERVAL = 2.0  # seconds between VersionReg/antenna checks while polling
BACKOFF_INITIAL = 0.25
BACKOFF_MAX = 2.0
SPI_SPEED_HZ = 1_000_000  # the library's default

# Physical header pin of each BCM GPIO on the 40-pin header.
BCM_TO_BOARD = {
    0: 27, 1: 28, 2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23, 12: 32, 13: 33,
    14: 8, 15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38, 21: 40, 22: 15, 23: 16, 24: 18, 25: 22,
    26: 37, 27: 13,
}


# ---------------------------------------------------------------- where the parts come from


class Factory(Protocol):
    """What the driver needs from the machine (gpiozero's pin factories are the model).

    ``mfrc522``: the mfrc522 package (its ``MFRC522`` class is subclassed);
    ``gpio``: the ``RPi.GPIO`` module or one with its API (the reset pin);
    ``spi()``: a new, unopened ``spidev.SpiDev`` or one with its API.
    Accessing ``mfrc522`` or ``gpio`` may raise :class:`ReaderUnavailable`.
    """

    @property
    def mfrc522(self) -> ModuleType: ...

    @property
    def gpio(self) -> Any: ...

    def spi(self) -> Any: ...


class PiFactory:
    """The real parts: ``mfrc522``, ``RPi.GPIO`` (rpi-lgpio on a Pi 5) and ``spidev``, imported on first use.

        >>> factory = PiFactory()            # imports nothing yet
        >>> factory.gpio                     # doctest: +SKIP
        <module 'RPi.GPIO' ...>
    """

    def __init__(self) -> None:
        self._parts: tuple[ModuleType, ModuleType, ModuleType] | None = None

    def _load(self) -> tuple[ModuleType, ModuleType, ModuleType]:
        if self._parts is None:
            self._parts = _import_library()
        return self._parts

    @property
    def mfrc522(self) -> ModuleType:
        return self._load()[0]

    @property
    def gpio(self) -> ModuleType:
        return self._load()[1]

    def spi(self) -> Any:
        return self._load()[2].SpiDev()


def _import_library() -> tuple[ModuleType, ModuleType, ModuleType]:
    """Import mfrc522, RPi.GPIO and spidev, or explain why they cannot work here."""
    try:
        lib = importlib.import_module("mfrc522")
        gpio = importlib.import_module("RPi.GPIO")
        spidev = importlib.import_module("spidev")
    except RuntimeError as exc:  # RPi.GPIO off a Pi: "This module can only be run on a Raspberry Pi!"
        raise ReaderUnavailable(
            'reader.type = "mfrc522" needs a Raspberry Pi: importing the mfrc522 library failed '
            f"({exc.__class__.__name__}: {exc}). On a Raspberry Pi 5 install rpi-lgpio in place of RPi.GPIO; "
            'off a Pi use reader.type = "stdin" (tests and demos: kiosk.sim.rc522)', Cause.NOT_A_PI
        ) from exc
    except ImportError as exc:
        raise ReaderUnavailable(
            'reader.type = "mfrc522" needs the mfrc522, spidev and RPi.GPIO packages (on a Raspberry Pi 5: '
            f"rpi-lgpio in place of RPi.GPIO) in the kiosk's venv: {exc}", Cause.MISSING_PACKAGE
        ) from exc
    return lib, gpio, spidev


# ---------------------------------------------------------------- the reader


class Mfrc522Reader(Reader):
    """Badge taps from an RC522 on SPI ``reader.spi_bus``.``reader.spi_device``: each tap is the UID bytes.

    ``factory`` supplies the mfrc522 library, RPi.GPIO and the SPI device
    (see :class:`Factory`); without one, :attr:`default_factory`, else a new
    :class:`PiFactory` (the real thing). ``sleep`` (default ``time.sleep``) is
    used for the short waits inside a frame (about 2.5 ms) and the reset pulse;
    ``clock`` (default ``time.monotonic``) for the release timing. Tests pass
    no-op/fake ones and drive :meth:`step` directly. Over the simulated chip::

        from kiosk.sim import rc522 as fakespi

        hw = fakespi.board()                           # a FakeMfrc522 on spidev0.0, RST on GPIO25
        reader = Mfrc522Reader(ReaderSettings(), factory=hw)
        hw.chip.place(fakespi.FakeCard("12345678"))
        for uid in reader.taps(stop):                  # b"\\x12\\x34\\x56\\x78": bytes, not text
            print(badges.from_bytes(uid))              # 12345678
        reader.close()                                 # antenna off, SPI closed, reset pin freed

    Raises :class:`~kiosk.exc.ReaderUnavailable` (with a ``cause``) when the
    parts cannot be loaded or the device or reset pin cannot be opened.
    """

    name = "mfrc522"
    default_factory: Factory | None = None  # as gpiozero's Device.pin_factory: used when no factory is passed

    def __init__(self, settings, *, factory: Factory | None = None, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.interval = max(settings.poll_interval, MIN_INTERVAL)
        self._sleep = sleep or time.sleep
        self._clock = clock or time.monotonic
        self.bus, self.device = settings.spi_bus, settings.spi_device
        self.where = f"MFRC522 on /dev/spidev{self.bus}.{self.device}"
        if factory is None:
            factory = type(self).default_factory or PiFactory()
        self.factory = factory
        lib, gpio = factory.mfrc522, factory.gpio
        pin_mode, pin = gpio.BCM, settings.reset_pin
        if gpio.getmode() == gpio.BOARD:  # someone chose physical numbering first: follow it
            if pin not in BCM_TO_BOARD:
                raise ReaderUnavailable(f"reader.reset_pin = {pin}: BCM GPIO{pin} is not on the 40-pin header",
                                        Cause.PIN_SETUP)
            pin_mode, pin = gpio.BOARD, BCM_TO_BOARD[pin]
        self.chip = self._open(lib, gpio, pin_mode, pin)
        self._lock = threading.Lock()
        self._closed = False
        self._ready = False
        self._needs_init = False  # the driver's constructor ran MFRC522_Init just now
        self._attempts = 0  # failed recovery attempts in a row
        self._errors = 0  # polls in a row that ended in a ChipError
        self._version = 0
        self._next_check = 0.0
        self._held: dict[bytes, float] = {}  # UID -> when last seen
        self.polls = 0

    def _open(self, lib: ModuleType, gpio: Any, pin_mode: int, pin: int):
        """Open the SPI device, set up the reset pin and the chip; errors become ReaderUnavailable."""
        device_path = f"/dev/spidev{self.bus}.{self.device}"
        spi = None
        try:
            spi = self.factory.spi()
            spi.open(self.bus, self.device)
            spi.max_speed_hz = SPI_SPEED_HZ
            return driver_class(lib.MFRC522)(spi=spi, gpio=gpio, pin_mode=pin_mode, pin_rst=pin, sleep=self._sleep)
        except BaseException as exc:
            if spi is not None:
                try:
                    spi.close()
                except OSError:
                    pass
            if isinstance(exc, FileNotFoundError):
                raise ReaderUnavailable(
                    f"{device_path} not found: enable SPI (sudo raspi-config nonint do_spi 0, then reboot) and "
                    "check reader.spi_bus / reader.spi_device", Cause.DEVICE_MISSING) from None
            if isinstance(exc, PermissionError):
                raise ReaderUnavailable(
                    f"permission denied on {device_path}: add the kiosk's user to group spi (and gpio)",
                    Cause.PERMISSION) from None
            if isinstance(exc, OSError):
                raise ReaderUnavailable(f"cannot open {device_path}: {exc.strerror or exc}") from None
            if isinstance(exc, (RuntimeError, ValueError)):  # RPi.GPIO: no /dev/mem access, Pi 5 SOC, bad channel
                raise ReaderUnavailable(
                    f"cannot set up the reset pin (reader.reset_pin = {self.settings.reset_pin}, BCM): {exc}. On a "
                    "Raspberry Pi 5 install rpi-lgpio in place of RPi.GPIO; elsewhere add the user to group gpio",
                    Cause.PIN_SETUP) from None
            raise

    # ------------------------------------------------------------ public

    def taps(self, stop: threading.Event) -> Iterator[bytes]:
        """The UID bytes of each new tap, polling every ``reader.poll_interval`` until ``stop`` or :meth:`close`.

        Never raises: errors are reported through ``on_health`` and retried with backoff.
        """
        failing = False
        while not stop.is_set() and not self._closed:
            try:
                uid, delay = self.step()
                failing = False
            except Exception as exc:  # never let the reader thread die: report, back off, retry
                if not failing:
                    log.exception("%s: unexpected error", self.where)
                failing = True
                self._ready, self._needs_init = False, True
                self._set_health(False, f"{self.where}: unexpected error ({exc.__class__.__name__}); retrying")
                uid, delay = None, BACKOFF_MAX
            if uid is not None:
                yield uid
            if stop.wait(delay):
                break

    def step(self) -> tuple[bytes | None, float]:
        """One poll: (a new tap's UID bytes or None, seconds to wait before the next step)."""
        with self._lock:
            start = self._clock()
            if self._closed:
                return None, self.interval
            if not self._ready:
                return None, self._recover(start)
            try:
                if start >= self._next_check:
                    self._check()
                    self._next_check = start + CHECK_INTERVAL
                uid = self._scan()
            except (ChipError, OSError) as exc:
                self._ready, self._needs_init = False, True
                self._errors += 1
                if self._errors < MAX_ERRORS:  # a glitch or a power cycle: set the chip up again at once
                    log.info("%s: %s; re-initialising", self.where, exc)
                    return None, self._recover(self._clock())
                return None, self._failed(f"frames keep failing: {exc}")
            if self._errors:
                self._errors = 0
                self._attempts = 0
                self._report_ok()
            self.polls += 1
            new = self._seen(uid, start)
            return (uid if new else None), max(0.0, self.interval - (self._clock() - start))

    def close(self) -> None:
        """Antenna off, SPI closed, only the reset pin freed (other pins of the process stay set up)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.chip.close_device()
            except Exception:
                log.debug("%s: error while closing", self.where, exc_info=True)

    # ------------------------------------------------------------ internals

    def _seen(self, uid: bytes | None, now: float) -> bool:
        """Note a poll's result; True if ``uid`` is a new tap (not held, or released since)."""
        release = self.settings.release_seconds
        for held, last in list(self._held.items()):
            if now - last >= release:
                del self._held[held]
        if uid is None:
            return False
        new = uid not in self._held
        self._held[uid] = now
        return new

    def _check(self) -> None:
        _, problem = self.chip.verify()
        if problem is not None:
            raise ChipError(problem)

    def _recover(self, now: float) -> float:
        """Bring the chip up; returns the delay before the next step."""
        try:
            if self._attempts:
                self.chip.hard_reset()
            if self._needs_init or self._attempts:
                self.chip.MFRC522_Init()
            version, problem = self.chip.verify()
        except (ChipError, OSError, RuntimeError) as exc:
            version, problem = None, f"{exc.__class__.__name__}: {exc}"
        if problem is not None:
            return self._failed(problem)
        self._ready, self._needs_init, self._version = True, False, version
        self._next_check = now + CHECK_INTERVAL
        if self._errors < MAX_ERRORS:  # after a run of failed frames, only a good poll says "OK"
            self._attempts = 0
            self._report_ok()
        return min(0.01, self.interval)  # cards need a few ms of field to power up

    def _report_ok(self) -> None:
        version = self._version
        message = f"{self.where}: OK (chip {VERSIONS.get(version, 'unknown')}, VersionReg 0x{version:02X})"
        if not self.healthy:
            log.info("%s: answering again", self.where)
        elif message != self.health_message:
            log.info("%s", message)
        self._set_health(True, message)

    def _failed(self, problem: str) -> float:
        """Report the reader down (once per problem); returns the backoff delay."""
        self._attempts += 1
        self._needs_init = True
        message = f"{self.where}: not answering ({problem}); retrying"
        if self.healthy or message != self.health_message:
            log.warning("%s", message)
        self._set_health(False, message)
        return min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** min(self._attempts - 1, 10))

    def _scan(self) -> bytes | None:
        """WUPA, anticollision and SELECT at each cascade level, HLTA: the full UID of one card, or None."""
        chip = self.chip
        atqa = chip.transceive([WUPA], tx_last_bits=7)
        if atqa is None or atqa.errors & FATAL_ERRORS or atqa.bits != 16:
            return None  # nobody there (a collision of different ATQAs is fine: anticollision sorts it)
        uid = bytearray()
        for sel in SEL_CODES:
            cl = self._anticollision(sel)
            if cl is None:
                return None
            sak = self._select(sel, cl)
            if sak is None:
                return None
            if sak & SAK_UID_INCOMPLETE:
                if cl[0] != CASCADE_TAG:
                    return None
                uid += cl[1:4]
                continue
            uid += cl[0:4]
            chip.transceive(with_crc([0x50, 0x00]))  # HLTA: no answer expected
            return bytes(uid)
        return None  # SAK still "incomplete" after level 3: not a valid card

    def _anticollision(self, sel: int) -> bytes | None:
        """UID CLn + BCC of one card at cascade level ``sel``, choosing the 1-branch at each collision."""
        cl = bytearray(5)
        known = 0  # UID CLn bits known so far
        for _ in range(33):
            full, rem = divmod(known, 8)
            frame = self.chip.transceive([sel, ((2 + full) << 4) | rem, *cl[: full + (1 if rem else 0)]],
                                         tx_last_bits=rem, rx_align=rem)
            if frame is None or frame.errors & FATAL_ERRORS:
                return None
            for i, byte in enumerate(frame.data):
                if full + i >= 5:
                    return None
                if i == 0 and rem:
                    mask = (0xFF << rem) & 0xFF
                    cl[full] = (cl[full] & ~mask & 0xFF) | (byte & mask)
                else:
                    cl[full + i] = byte
            if frame.collision is None:
                if known + frame.bits != 40 or cl[0] ^ cl[1] ^ cl[2] ^ cl[3] != cl[4]:
                    return None  # short answer or wrong BCC
                return bytes(cl)
            position = full * 8 + frame.collision  # 1-based bit of UID CLn where the answers differ
            if not known < position <= 32:
                return None
            index, bit = divmod(position - 1, 8)
            cl[index] = (cl[index] & ((1 << bit) - 1)) | (1 << bit)
            cl[index + 1:] = bytes(4 - index)
            known = position
        return None

    def _select(self, sel: int, cl: bytes) -> int | None:
        frame = self.chip.transceive(with_crc([sel, 0x70, *cl]))
        if frame is None or frame.errors & (FATAL_ERRORS | COLL_ERR) or frame.bits != 24:
            return None
        if crc_a(frame.data[:1]) != frame.data[1] | (frame.data[2] << 8):
            return None
        return frame.data[0]
