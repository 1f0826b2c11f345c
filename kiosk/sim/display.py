"""Simulated display hardware at the lowest layer: an I2C bus with an SSD1306/SH1106 on it, an SPI bus.

The real luma drivers run on top, as on a Pi: ``luma.core.interface.serial.i2c``
takes any smbus-like ``bus``, so :class:`OledBus` stands where ``smbus2.SMBus``
would be. It decodes what the driver sends (init sequence, addressing, GDDRAM
data, display on/off, contrast) into the picture the panel would show
(:meth:`OledBus.image`). :class:`SpiBus` and :class:`Gpio` stand in for spidev
and RPi.GPIO under the SPI LCD drivers (recording only).

Faults, switchable at any time (``bus.fault = ...``), on every write:

- ``None``: a working panel;
- ``"broken"``: ``OSError(EREMOTEIO)``, what an I2C device that stopped
  answering (unplugged, loose wire, dead) gives on a Pi;
- ``"hang"``: the write blocks until :meth:`OledBus.release` (a bus stuck low);
- ``"absent"``: opening the bus fails (``/dev/i2c-1`` missing: I2C not enabled).

For a whole ``kiosk run`` process (benchmarks, end-to-end tests) set
``KIOSK_DISPLAY_SIM`` to ``ok``, ``broken``, ``hang`` or ``absent``: the display
then runs its configured driver over these simulated buses instead of
``/dev/i2c-*`` and ``/dev/spidev*`` (see :func:`from_env`). The daemon logs a
warning when it does, so it is never mistaken for real hardware.
"""

from __future__ import annotations

import errno
import os
import threading

from PIL import Image

ENV = "KIOSK_DISPLAY_SIM"
FAULTS = ("ok", "broken", "hang", "absent")

# Commands followed by arguments: (SSD1306, SH1106) byte counts.
_SSD1306_ARGS = {0x20: 1, 0x21: 2, 0x22: 2, 0x81: 1, 0x8D: 1, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1,
                 0xDB: 1, 0xA3: 2, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5}
_SH1106_ARGS = {0x81: 1, 0x8D: 1, 0xA8: 1, 0xAD: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1, 0xDB: 1}


class Faulty:
    """Shared fault switch: ``fault`` None/"ok" (works), "broken" or "hang"."""

    def __init__(self, fault: str | None = None):
        self.fault = fault
        self.writes = 0  # successful writes
        self.failures = 0  # writes that raised
        self._released = threading.Event()
        self._lock = threading.Lock()

    def release(self) -> None:
        """Let hanging writes fail (as a bus that timed out); later writes hang no more."""
        self._released.set()

    def _write(self) -> None:
        if self.fault == "hang" and not self._released.is_set():
            self._released.wait()
        if self.fault in ("broken", "hang"):
            with self._lock:
                self.failures += 1
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        with self._lock:
            self.writes += 1


class OledBus(Faulty):
    """An smbus-like I2C bus with one SSD1306 or SH1106 at ``address``, as luma's i2c interface drives it."""

    def __init__(self, chip: str = "ssd1306", width: int = 128, height: int = 64, address: int = 0x3C,
                 fault: str | None = None):
        super().__init__(fault)
        if chip not in ("ssd1306", "sh1106"):
            raise ValueError(f"unknown chip {chip!r}")
        self.chip, self.width, self.height, self.address = chip, width, height, address
        self.columns = 132 if chip == "sh1106" else width
        self.pages = max(1, height // 8)
        self.ram = bytearray(self.columns * self.pages)
        self.on = False
        self.contrast = 0x7F
        self.inverted = False
        self.frames = 0  # complete pictures written (the last data byte of the last page)
        self.closed = False
        self._args = _SH1106_ARGS if chip == "sh1106" else _SSD1306_ARGS
        self._pending: list[int] = []  # a command waiting for its arguments
        self._mode = 2  # page addressing at reset
        self._cols = (0, self.columns - 1)
        self._page_range = (0, self.pages - 1)
        self._col = 0
        self._page = 0
        self._state = threading.Lock()

    # -- smbus API used by luma.core.interface.serial.i2c (with bus= given)

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        self._write()
        if address != self.address:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))  # nobody answers there
        with self._state:
            if register == 0x00:
                for byte in data:
                    self._command(byte)
            elif register == 0x40:
                for byte in data:
                    self._data(byte)
            else:
                raise OSError(errno.EINVAL, f"control byte 0x{register:02X}")

    def write_quick(self, address: int) -> None:
        """A zero-length write: does anything answer at ``address``? (``i2cdetect``, ``kiosk doctor``)"""
        self._write()
        if address != self.address:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))

    def close(self) -> None:
        self.closed = True

    # -- the controller

    def _command(self, byte: int) -> None:
        if self._pending:
            self._pending.append(byte)
            if len(self._pending) == self._args[self._pending[0]] + 1:
                self._apply(*self._pending)
                self._pending = []
            return
        if byte in self._args:
            self._pending = [byte]
            return
        if byte in (0xAE, 0xAF):
            self.on = byte == 0xAF
        elif byte in (0xA6, 0xA7):
            self.inverted = byte == 0xA7
        elif 0xB0 <= byte <= 0xB0 + 15:
            self._page = (byte - 0xB0) % self.pages
        elif byte <= 0x0F:
            self._col = (self._col & 0xF0) | byte
        elif byte <= 0x1F:
            self._col = (self._col & 0x0F) | ((byte - 0x10) << 4)
        # anything else (segment remap, COM scan, start line, charge pump on SH1106...) changes no pixel here

    def _apply(self, cmd: int, *args: int) -> None:
        if cmd == 0x81:
            self.contrast = args[0]
        elif cmd == 0x20:
            self._mode = args[0] & 0x03
        elif cmd == 0x21:
            self._cols = (args[0], args[1])
            self._col = args[0]
        elif cmd == 0x22:
            self._page_range = (args[0] % self.pages, args[1] % self.pages)
            self._page = self._page_range[0]

    def _data(self, byte: int) -> None:
        if self._col < self.columns:
            self.ram[self._page * self.columns + self._col] = byte
        if self._mode == 0:  # horizontal: wrap to the next page, then to the first
            if self._col >= self._cols[1]:
                self._col = self._cols[0]
                if self._page >= self._page_range[1]:
                    self._page = self._page_range[0]
                    self.frames += 1
                else:
                    self._page += 1
            else:
                self._col += 1
        else:  # page addressing (SH1106, SSD1306 at reset): stay in the page
            self._col = min(self._col + 1, 0xFF)
            if self._page == self.pages - 1 and self._col >= self._visible()[1]:
                self.frames += 1

    def _visible(self) -> tuple[int, int]:
        """The RAM columns the glass shows (the SH1106's 132-column RAM is centred on 128 pixels)."""
        start = (self.columns - self.width) // 2
        return start, start + self.width

    def image(self) -> Image.Image:
        """The picture on the glass: mode "1"; all black while the display is off."""
        with self._state:
            ram, on, inverted = bytes(self.ram), self.on, self.inverted
        image = Image.new("1", (self.width, self.height), 0)
        if not on:
            return image
        start, _ = self._visible()
        pixels = image.load()
        for y in range(self.height):
            row = (y // 8) * self.columns
            bit = 1 << (y % 8)
            for x in range(self.width):
                lit = bool(ram[row + start + x] & bit)
                pixels[x, y] = 1 if lit != inverted else 0
        return image


class SpiBus(Faulty):
    """A spidev-like SPI device (the LCD's): records what is written."""

    def __init__(self, fault: str | None = None):
        super().__init__(fault)
        self.opened: tuple[int, int] | None = None
        self.max_speed_hz = 0
        self.mode = 0
        self.bytes_written = 0
        self.closed = False

    def open(self, port: int, device: int) -> None:
        self.opened = (port, device)

    def writebytes(self, data) -> None:
        self._write()
        self.bytes_written += len(data)

    def close(self) -> None:
        self.closed = True


class Gpio:
    """An RPi.GPIO-like module for the LCD's data/command, reset and backlight pins: records levels."""

    BCM, OUT, IN, HIGH, LOW = 11, 0, 1, 1, 0

    def __init__(self):
        self.levels: dict[int, int] = {}
        self.setup_pins: set[int] = set()

    def setmode(self, mode) -> None:
        pass

    def setwarnings(self, flag) -> None:
        pass

    def setup(self, pin: int, direction, **kwargs) -> None:
        self.setup_pins.add(pin)
        self.levels[pin] = kwargs.get("initial", self.LOW)

    def output(self, pin: int, value) -> None:
        self.levels[pin] = 1 if value else 0

    def cleanup(self, pins=None) -> None:
        for pin in ([pins] if isinstance(pins, int) else pins or list(self.setup_pins)):
            self.setup_pins.discard(pin)
            self.levels.pop(pin, None)


class Hardware:
    """The simulated buses a display opens: one I2C bus (OLED) or one SPI bus and GPIO (LCD).

    The display calls :meth:`i2c` / :meth:`spi` / :meth:`gpio` each time it (re)opens
    its device; the same objects come back, so a test can switch ``fault`` and watch.
    """

    def __init__(self, fault: str | None = None, *, chip: str = "ssd1306", width: int = 128, height: int = 64,
                 address: int = 0x3C):
        self.fault = None if fault == "ok" else fault
        self.bus = OledBus(chip, width, height, address, fault=self._write_fault())
        self.spi_bus = SpiBus(fault=self._write_fault())
        self.pins = Gpio()
        self.opens = 0

    def _write_fault(self) -> str | None:
        return self.fault if self.fault in ("broken", "hang") else None

    def _open(self, what: str) -> None:
        self.opens += 1
        if self.fault == "absent":
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), what)

    def i2c(self, port: int) -> OledBus:
        self._open(f"/dev/i2c-{port}")
        return self.bus

    def spi(self, port: int, device: int) -> SpiBus:
        self._open(f"/dev/spidev{port}.{device}")
        return self.spi_bus

    def gpio(self) -> Gpio:
        return self.pins

    def release(self) -> None:
        self.bus.release()
        self.spi_bus.release()


def from_env(driver: str = "ssd1306", width: int = 128, height: int = 64, address: int = 0x3C) -> Hardware | None:
    """Simulated hardware if ``KIOSK_DISPLAY_SIM`` asks for it (ok, broken, hang, absent), else None.

    Raises ValueError for another value, so that a typo never silently drives real hardware.
    """
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return None
    if value not in FAULTS:
        raise ValueError(f"{ENV}={value!r}: must be one of {', '.join(FAULTS)}")
    chip = driver if driver in ("ssd1306", "sh1106") else "ssd1306"
    return Hardware(value, chip=chip, width=width, height=height, address=address)
