"""The display panels the kiosk drives through luma: what each driver is, and how to open one.

The table (:data:`PANELS`) and the size checks import nothing heavy, so that
configuration checks (``kiosk.config``) know the drivers without Pillow or luma.
The sizes are those the luma drivers accept (``luma.oled.device.ssd1306`` and
friends raise DeviceDisplayModeError for others) and that the screens' layout
can use: at least 128x64 once rotated. :func:`open_device` imports luma, only
when a display is opened.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import types
from dataclasses import dataclass

from kiosk.exc import Cause, DisplayUnavailable

log = logging.getLogger("kiosk.feedback.display")

I2C, SPI, MEMORY = "i2c", "spi", "memory"


@dataclass(frozen=True)
class Panel:
    driver: str
    bus: str  # i2c | spi | memory (luma's dummy device: tests, benchmarks)
    sizes: tuple[tuple[int, int], ...]  # width x height before rotation; the first is the default
    colour: bool  # an RGB LCD (True) or a monochrome OLED
    package: str  # the Python package that holds the driver

    @property
    def default_size(self) -> tuple[int, int]:
        return self.sizes[0]


PANELS: dict[str, Panel] = {
    "ssd1306": Panel("ssd1306", I2C, ((128, 64),), False, "luma.oled"),
    "sh1106": Panel("sh1106", I2C, ((128, 64), (128, 128)), False, "luma.oled"),
    "st7735": Panel("st7735", SPI, ((160, 128), (128, 128)), True, "luma.lcd"),
    "ili9341": Panel("ili9341", SPI, ((320, 240), (240, 240), (320, 180)), True, "luma.lcd"),
    "dummy": Panel("dummy", MEMORY, ((128, 64),), False, "luma.core"),
}
DRIVERS = tuple(PANELS)
MIN_SIZE = (128, 64)  # the screens' layout needs this much, after rotation
MAX_DUMMY = 1024  # luma's dummy device takes any size; keep it sane


def size_problem(driver: str, width: int, height: int, rotate: int) -> str | None:
    """Why ``width`` x ``height`` (0: the default) cannot be used with ``driver``, or None."""
    panel = PANELS[driver]
    w, h = resolved_size(driver, width, height)
    if driver == "dummy":
        if not (0 < w <= MAX_DUMMY and 0 < h <= MAX_DUMMY):
            return f"width and height must be 1..{MAX_DUMMY}, not {w}x{h}"
    elif (w, h) not in panel.sizes:
        return f"{driver} supports {', '.join(f'{a}x{b}' for a, b in panel.sizes)}, not {w}x{h}"
    logical = (h, w) if rotate % 2 else (w, h)
    if logical[0] < MIN_SIZE[0] or logical[1] < MIN_SIZE[1]:
        return (f"{w}x{h} rotated {rotate * 90} degrees is {logical[0]}x{logical[1]}: the screens need at least "
                f"{MIN_SIZE[0]}x{MIN_SIZE[1]} (use rotate 0 or 2)")
    return None


def resolved_size(driver: str, width: int, height: int) -> tuple[int, int]:
    """The panel's width and height before rotation (0, 0: the driver's default)."""
    return (width, height) if width or height else PANELS[driver].default_size


# ---------------------------------------------------------------- opening a panel

_construct_lock = threading.Lock()
_warned_sim: list = []  # the simulation is announced once per process


def logical_size(settings) -> tuple[int, int]:
    """The size the screens are drawn at: the panel's, turned by ``rotate``."""
    w, h = resolved_size(settings.driver, settings.width, settings.height)
    return (h, w) if settings.rotate % 2 else (w, h)


@contextlib.contextmanager
def _no_atexit_hooks(captured: list):
    """luma registers an exit hook per device object, holding it forever: a display retried every
    minute for a week would keep thousands alive. The display closes its device itself instead."""
    import luma.core.device

    with _construct_lock:
        original = luma.core.device.atexit
        luma.core.device.atexit = types.SimpleNamespace(register=captured.append)
        try:
            yield
        finally:
            luma.core.device.atexit = original


def open_device(settings, *, hardware=None):
    """A luma device for ``settings`` (:class:`kiosk.config.DisplaySettings`), initialised and switched on.

    ``hardware``: simulated buses (:class:`kiosk.sim.display.Hardware`); None uses
    ``KIOSK_DISPLAY_SIM`` if set, else the real ``/dev/i2c-*`` or ``/dev/spidev*``.
    Raises :class:`~kiosk.exc.DisplayUnavailable` with a typed cause.
    """
    panel = PANELS[settings.driver]
    width, height = resolved_size(settings.driver, settings.width, settings.height)
    if hardware is None and panel.bus != "memory":
        from kiosk.sim.display import from_env

        hardware = from_env(settings.driver, width, height, settings.i2c_address)
        if hardware is not None and not _warned_sim:
            _warned_sim.append(True)
            log.warning("display: simulated %s (KIOSK_DISPLAY_SIM=%s), not the real bus", settings.driver,
                        hardware.fault or "ok")
    serial = None
    try:
        with _no_atexit_hooks([]):
            if settings.driver == "dummy":
                from luma.core.device import dummy

                return dummy(width=width, height=height, rotate=settings.rotate, mode="1")
            if panel.bus == I2C:
                from luma.core.interface.serial import i2c
                from luma.oled import device as oled

                bus = hardware.i2c(settings.i2c_port) if hardware else None
                serial = i2c(bus=bus, port=settings.i2c_port, address=settings.i2c_address)
                return getattr(oled, settings.driver)(serial, width=width, height=height, rotate=settings.rotate)
            from luma.core.interface.serial import spi
            from luma.lcd import device as lcd

            gpio = hardware.gpio() if hardware else None
            spi_dev = hardware.spi(settings.spi_port, settings.spi_device) if hardware else None
            serial = spi(spi=spi_dev, gpio=gpio, port=settings.spi_port, device=settings.spi_device,
                         gpio_DC=settings.dc_pin, gpio_RST=settings.reset_pin)
            light = {"backlight": _FixedBacklight()} if settings.backlight_pin < 0 else \
                {"gpio": gpio, "gpio_LIGHT": settings.backlight_pin}
            return getattr(lcd, settings.driver)(serial, width=width, height=height, rotate=settings.rotate,
                                                 **light)
    except Exception as exc:
        if serial is not None:
            with contextlib.suppress(Exception):
                serial.cleanup()
        message, cause = describe_error(exc, settings)
        raise DisplayUnavailable(message, cause) from exc


class _FixedBacklight:
    """An LCD backlight wired to 3V3 (``backlight_pin = -1``): nothing to switch."""

    def __call__(self, on: bool) -> None:
        pass


def describe_error(exc: BaseException, settings) -> tuple[str, Cause]:
    """A display error as one line for a person, and its typed cause."""
    if isinstance(exc, DisplayUnavailable):
        return str(exc), exc.cause
    panel = PANELS[settings.driver]
    where = (f"/dev/i2c-{settings.i2c_port} address 0x{settings.i2c_address:02X}" if panel.bus == I2C
             else f"/dev/spidev{settings.spi_port}.{settings.spi_device}")
    if isinstance(exc, ImportError):
        return (f"{exc.name or panel.package} is not installed (pip install luma.oled luma.lcd: "
                "the kiosk[display] extra)", Cause.MISSING_PACKAGE)
    name = type(exc).__name__
    code = getattr(exc, "errno", None)
    text = str(exc) or name
    if name == "DevicePermissionError" or code in (errno.EACCES, errno.EPERM):
        return f"{settings.driver} on {where}: permission denied ({text})", Cause.PERMISSION
    if code == errno.ENOENT or "not found:" in text:
        return f"{settings.driver}: {where.split(' ')[0]} missing ({text})", Cause.DEVICE_MISSING
    if name == "DeviceNotFoundError" or code in (errno.EREMOTEIO, errno.EIO, errno.ENXIO, errno.ETIMEDOUT):
        return f"{settings.driver} on {where} not answering ({text})", Cause.NOT_ANSWERING
    if name == "UnsupportedPlatform":
        return f"{settings.driver}: no GPIO access for its pins ({text})", Cause.NOT_A_PI
    return f"{settings.driver} on {where}: {name}: {text}", Cause.UNKNOWN


def release(device) -> None:
    """Let go of a device that failed, without talking to it (it would only fail again)."""
    backlight = getattr(device, "backlight", None)
    with contextlib.suppress(Exception):
        if backlight is not None and hasattr(backlight, "cleanup"):
            backlight.cleanup()
    with contextlib.suppress(Exception):
        device._serial_interface.cleanup()
