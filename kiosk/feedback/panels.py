"""The display panels the kiosk drives through luma, as data: bus, sizes, colour.

Kept free of imports so that configuration checks (``kiosk.config``) know the
drivers without loading Pillow or luma. The sizes are those the luma drivers
accept (``luma.oled.device.ssd1306`` and friends raise DeviceDisplayModeError
for others) and that the screens' layout can use: at least 128x64 once rotated.
"""

from __future__ import annotations

from dataclasses import dataclass

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
