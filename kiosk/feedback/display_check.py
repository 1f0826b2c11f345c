"""``kiosk doctor``'s display check: packages, font, bus device, and whether the panel answers.

Imports neither Pillow nor luma at module level, so that it can report them
missing. The I2C probe is a zero-length write to the panel's address (what
``i2cdetect`` does): it changes nothing on the screen, so it is safe while the
daemon draws. SPI panels cannot be probed (the bus has no answer): the check
stops at the device node.

    status, detail, fix = check_display(settings)[1:]
    Check(*check_display(settings))          # kiosk.doctor.Check has the same fields
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import sys
from typing import NamedTuple

from kiosk.feedback import kinds
from kiosk.feedback.panels import I2C, PANELS

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


class DisplayCheck(NamedTuple):
    """The fields of :class:`kiosk.doctor.Check`: ``fix`` is one line, "" when ok or skipped."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def install_hint() -> str:
    """The command that installs the display's packages into this kiosk's Python environment."""
    return f"{sys.executable} -m pip install luma.oled luma.lcd (the kiosk[display] extra)"


def check_display(settings, *, dev_dir: str = "/dev", hardware=None) -> DisplayCheck:
    """Is the configured display usable? ``settings``: the whole :class:`kiosk.config.Settings`.

    ``dev_dir`` stands for ``/dev`` (tests); ``hardware``: simulated buses
    (:mod:`kiosk.sim.display`); None uses ``KIOSK_DISPLAY_SIM`` when it is set.
    """
    if "display" not in kinds(settings):
        return DisplayCheck("display", SKIP, f"no display in feedback ({'+'.join(kinds(settings))})")
    display = settings.display
    panel = PANELS[display.driver]
    missing = [name for name in ("PIL", "luma.core", panel.package) if not _importable(name)]
    if missing:
        names = ", ".join("Pillow" if m == "PIL" else m for m in missing)
        return DisplayCheck("display", FAIL, f"{names} not installed: the display stays dark (taps still work)",
                            install_hint())
    from kiosk.feedback.screens import Fonts

    fonts = Fonts({"regular": display.font or None, "bold": display.font or None})
    font_note = ""
    if fonts.missing:
        font_note = "; DejaVu fonts missing (Pillow's default font draws Latin only)"
    if display.driver == "dummy":
        return DisplayCheck("display", WARN, f"driver dummy: pictures are drawn in memory only{font_note}",
                            'set display.driver to the panel: "ssd1306", "sh1106", "st7735" or "ili9341"')
    if hardware is None:
        from kiosk.sim.display import from_env

        try:
            hardware = from_env(display.driver, address=display.i2c_address)
        except ValueError as exc:
            return DisplayCheck("display", FAIL, str(exc), "unset KIOSK_DISPLAY_SIM (it is for tests and benchmarks)")
    simulated = " (simulated: KIOSK_DISPLAY_SIM)" if hardware is not None else ""
    if panel.bus == I2C:
        result = _check_i2c(display, dev_dir, hardware, simulated)
    else:
        result = _check_spi(display, dev_dir, hardware, simulated)
    if font_note and result.status == OK:
        return DisplayCheck("display", WARN, result.detail + font_note, "sudo apt-get install fonts-dejavu-core")
    return result


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _node(path: str, hardware, what: str, fix_missing: str, group: str) -> DisplayCheck | None:
    if hardware is not None:
        if hardware.fault == "absent":
            return DisplayCheck("display", FAIL, f"{path} missing{what}", fix_missing)
        return None
    if not os.path.exists(path):
        return DisplayCheck("display", FAIL, f"{path} missing{what}", fix_missing)
    if not os.access(path, os.R_OK | os.W_OK):
        user = _user()
        return DisplayCheck("display", FAIL, f"{path} present, but user {user} may not use it",
                            f"sudo usermod -aG {group} {user}, then restart the service (sudo systemctl restart kiosk)")
    return None


def _check_i2c(display, dev_dir: str, hardware, simulated: str) -> DisplayCheck:
    path = os.path.join(dev_dir, f"i2c-{display.i2c_port}")
    where = f"0x{display.i2c_address:02X} on {path}"
    problem = _node(path, hardware, f": I2C is not enabled{simulated}",
                    "sudo raspi-config nonint do_i2c 0, then reboot (dtparam=i2c_arm=on)", "i2c")
    if problem:
        return problem
    try:
        if hardware is not None:
            bus = hardware.i2c(display.i2c_port)
        else:
            import smbus2

            bus = smbus2.SMBus(display.i2c_port)
        try:
            bus.write_quick(display.i2c_address)
        finally:
            bus.close()
    except OSError as exc:
        return DisplayCheck(
            "display", FAIL, f"nothing answers at {where}{simulated} ({exc.strerror or exc})",
            f"check the wiring (VCC to 3V3 pin 1, GND pin 6, SDA pin 3, SCL pin 5) and the address: "
            f"i2cdetect -y {display.i2c_port} lists it (0x3C or 0x3D: display.i2c_address)")
    return DisplayCheck("display", OK, f"{display.driver} {_size(display)} answers at {where}{simulated}")


def _check_spi(display, dev_dir: str, hardware, simulated: str) -> DisplayCheck:
    path = os.path.join(dev_dir, f"spidev{display.spi_port}.{display.spi_device}")
    problem = _node(path, hardware, f": SPI is not enabled, or no such chip select{simulated}",
                    "sudo raspi-config nonint do_spi 0, then reboot; CS on CE1 (pin 26) is spi_device = 1", "spi")
    if problem:
        return problem
    pins = f"DC GPIO{display.dc_pin}, RST GPIO{display.reset_pin}"
    if display.backlight_pin >= 0:
        pins += f", backlight GPIO{display.backlight_pin}"
    return DisplayCheck("display", OK, f"{display.driver} {_size(display)} on {path} ({pins}){simulated}; "
                                       "an SPI panel cannot answer: check that it shows the clock")


def _size(display) -> str:
    from kiosk.feedback.panels import resolved_size

    w, h = resolved_size(display.driver, display.width, display.height)
    return f"{w}x{h}"
