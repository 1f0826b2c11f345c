"""Doctor checks of the hardware: SPI, the reader, GPIO."""

from __future__ import annotations

import glob
import os
import warnings

from kiosk import config
from kiosk.config import Settings
from kiosk.doctor import (FAIL, OK, SKIP, WARN, Check, _describe, _dev,
                          _needs_config, _user)
from kiosk.exc import Cause, HardwareError


# ---------------------------------------------------------------- SPI


def check_spi(settings: Settings | None) -> Check:
    reader = settings.reader if settings is not None else config.ReaderSettings()
    if settings is not None and reader.type != "mfrc522":
        return Check("spi", SKIP, f'reader.type = "{reader.type}": no SPI needed')
    note = "" if settings is not None else " (default reader.spi_bus/spi_device: configuration not loaded)"
    path = _dev(f"/dev/spidev{reader.spi_bus}.{reader.spi_device}")
    if not os.path.exists(path):
        return Check(
            "spi", FAIL, f"{path} not found: SPI is not enabled{note}",
            "sudo raspi-config nonint do_spi 0 (writes dtparam=spi=on to /boot/firmware/config.txt), "
            "then reboot; check reader.spi_bus / reader.spi_device",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        user = _user()
        return Check("spi", FAIL, f"{path} present, but user {user} may not read/write it{note}",
                     f"sudo usermod -aG spi {user}, then log in again / restart the service")
    return Check("spi", OK, f"{path} present, read/write{note}")


# ---------------------------------------------------------------- reader


KNOWN_GOOD_VERSIONS = {0x91: "MFRC522 v1.0", 0x92: "MFRC522 v2.0"}
NOT_ANSWERING_FIX = ("reader not answering: check wiring, 3.3 V (never 5 V), SDA on CE0 (pin 24), "
                     "RST on reader.reset_pin")


def check_reader(settings: Settings | None) -> Check:
    if settings is None:
        return _needs_config("reader")
    kind = settings.reader.type
    if kind == "stdin":
        return Check("reader", SKIP, 'reader.type = "stdin": badge ids are read from standard input, no hardware')
    if kind == "keyboard":
        return _check_keyboard(settings.reader)
    return _check_mfrc522(settings.reader)


def _check_keyboard(reader) -> Check:
    device = reader.device
    if not device:
        return Check("reader", FAIL, 'reader.type = "keyboard" but reader.device is not set',
                     "set reader.device to the reader's /dev/input/by-id/...-event-kbd path")
    if not os.path.exists(device):
        return Check("reader", FAIL, f"{device} not found (keyboard reader unplugged or wrong path)",
                     "plug the reader in; list devices with: ls -l /dev/input/by-id/")
    if not os.access(device, os.R_OK):
        user = _user()
        return Check("reader", FAIL, f"{device} present, but user {user} may not read it",
                     f"sudo usermod -aG input {user}, then log in again / restart the service")
    try:
        import evdev  # noqa: F401
    except ImportError:
        return Check("reader", FAIL, f"{device} readable, but python-evdev is not installed",
                     "pip install 'kiosk[keyboard]' (or evdev) in the kiosk's venv")
    return Check("reader", OK, f"keyboard reader {device} present, readable")


def _check_mfrc522(reader_settings) -> Check:
    from kiosk.readers.mfrc522 import VERSIONS, Mfrc522Reader

    where = f"/dev/spidev{reader_settings.spi_bus}.{reader_settings.spi_device}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RPi.GPIO: "This channel is already in use" (the daemon runs)
        try:
            reader = Mfrc522Reader(reader_settings)
        except HardwareError as exc:
            return Check("reader", FAIL, f"MFRC522 on {where}: {exc}", _reader_fix(exc.cause))
        try:
            version, problem = reader.chip.verify()
        except Exception as exc:
            return Check("reader", FAIL, f"MFRC522 on {where}: reading VersionReg failed ({_describe(exc)})",
                         NOT_ANSWERING_FIX)
        finally:
            reader.close()  # antenna off, SPI closed, reset pin released
    if version in (0x00, 0xFF):
        return Check("reader", FAIL, f"MFRC522 on {where}: reader not answering (VersionReg reads 0x{version:02X})",
                     NOT_ANSWERING_FIX)
    if version in KNOWN_GOOD_VERSIONS:
        name = KNOWN_GOOD_VERSIONS[version]
        if problem:
            return Check("reader", WARN, f"{name} on {where} (VersionReg 0x{version:02X}), but {problem}",
                         "check the power supply and wiring (a chip that loses its settings is browning out)")
        return Check("reader", OK, f"{name} on {where} (VersionReg 0x{version:02X})")
    name = VERSIONS.get(version, "unknown chip")
    extra = f"; {problem}" if problem else ""
    return Check("reader", WARN, f"{where}: VersionReg 0x{version:02X} ({name}): not a genuine NXP MFRC522{extra}",
                 "clone chips often work but read less reliably; if taps are missed, "
                 "use a board with a genuine NXP chip")


def _reader_fix(cause: Cause) -> str:
    match cause:
        case Cause.DEVICE_MISSING:
            return "sudo raspi-config nonint do_spi 0, then reboot; check reader.spi_bus / reader.spi_device"
        case Cause.PERMISSION:
            return f"sudo usermod -aG spi,gpio {_user()}, then log in again / restart the service"
        case Cause.NOT_A_PI:
            return ('run on the Raspberry Pi (on a Pi 5: pip install rpi-lgpio in the venv); '
                    'elsewhere set reader.type = "stdin"')
        case Cause.MISSING_PACKAGE:
            return ("pip install the kiosk with its Raspberry Pi extras (mfrc522, spidev, RPi.GPIO or rpi-lgpio) "
                    "in the venv")
        case Cause.PIN_SETUP:
            return (f"check reader.reset_pin; sudo usermod -aG gpio {_user()}; "
                    "on a Pi 5 install rpi-lgpio in place of RPi.GPIO")
    return "see the message above"


# ---------------------------------------------------------------- GPIO


def _gpio_nodes() -> list[str]:
    return sorted(glob.glob(_dev("/dev/gpiochip*")) + glob.glob(_dev("/dev/gpiomem*")))


def check_gpio(settings: Settings | None) -> Check:
    if settings is not None and settings.feedback.type != "gpio":
        return Check("gpio", SKIP, f'feedback.type = "{settings.feedback.type}": no GPIO needed')
    nodes = _gpio_nodes()
    if not nodes:
        return Check("gpio", FAIL, f"no GPIO on this machine (no {_dev('/dev/gpiochip*')} or {_dev('/dev/gpiomem*')})",
                     'run this on the Raspberry Pi; on another machine set feedback.type = "console" or "none"')
    user = _user()
    denied = [n for n in nodes if not os.access(n, os.R_OK | os.W_OK)]
    if len(denied) == len(nodes):
        return Check("gpio", FAIL, f"{', '.join(nodes)} present, but user {user} may not use them",
                     f"sudo usermod -aG gpio {user}, then log in again / restart the service")
    if settings is None:
        return Check("gpio", OK, f"{', '.join(n for n in nodes if n not in denied)} accessible "
                                 "(devices not tried: configuration not loaded)")
    return _try_feedback(settings.feedback, nodes, denied)


def _try_feedback(feedback, nodes: list[str], denied: list[str]) -> Check:
    from gpiozero import Device

    from kiosk.feedback.gpio import GpioFeedback

    fallbacks: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factory = None
        try:
            factory = Device._default_pin_factory()  # our own: the process-wide default stays unset
        except Exception as exc:
            fallbacks = [str(w.message) for w in caught]
            tried = "; ".join(fallbacks) or _describe(exc)
            return Check("gpio", FAIL, f"no usable pin library: {tried}",
                         "install lgpio in the kiosk's venv (pip install lgpio, or a venv with "
                         "--system-site-packages and apt install python3-lgpio)")
        try:
            try:
                device = GpioFeedback(feedback, pin_factory=factory)
            except Exception as exc:
                text = str(exc) or exc.__class__.__name__
                cause = getattr(exc, "cause", Cause.UNKNOWN)
                if cause is Cause.PIN_BUSY:
                    return Check("gpio", WARN, f"{text}: is the kiosk daemon running? (then this is expected)",
                                 "stop the daemon (sudo systemctl stop kiosk) to test the pins, or check "
                                 "that no other program uses them")
                if cause is Cause.PIN_CONFLICT:
                    return Check("gpio", FAIL, text, "give each LED and the buzzer its own pin in [feedback]")
                return Check("gpio", FAIL, text,
                             f"check the [feedback] pins and wiring; sudo usermod -aG gpio {_user()}")
            device.close()
        finally:
            factory.close()
    parts = _feedback_parts(feedback)
    name = type(factory).__name__
    return Check("gpio", OK, f"{', '.join(n for n in nodes if n not in denied)} accessible; "
                             f"{parts} set up with {name}")


def _feedback_parts(feedback) -> str:
    parts = []
    if feedback.leds == "pair":
        parts.append(f"LEDs green GPIO{feedback.green_pin}/red GPIO{feedback.red_pin}")
    elif feedback.leds == "rgb":
        parts.append(f"RGB LED GPIO{feedback.red_pin}/{feedback.green_pin}/{feedback.blue_pin}")
    if feedback.buzzer in ("active", "passive"):
        parts.append(f"{feedback.buzzer} buzzer GPIO{feedback.buzzer_pin}")
    return ", ".join(parts) or "no LEDs, no buzzer"



# ---------------------------------------------------------------- display


def check_display(settings: Settings | None) -> Check:
    """The door display (kiosk.feedback.display_check does the looking; it needs no Pillow to say Pillow is missing)."""
    if settings is None:
        return _needs_config("display")
    from kiosk import doctor
    from kiosk.feedback.display_check import check_display as look

    return Check(*look(settings, dev_dir=doctor.DEV_DIR))
