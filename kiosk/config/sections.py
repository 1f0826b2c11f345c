"""The settings: one frozen dataclass per TOML section, and the tables that bound each value."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kiosk.feedback import KINDS as FEEDBACK_KINDS
from kiosk.feedback.panels import DRIVERS as DISPLAY_DRIVERS
from kiosk.rules import Rules

DEFAULT_SYNC_FILE = "/run/systemd/timesync/synchronized"

# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class KioskSettings:
    name: str = "kiosk"
    state_dir: str = "/var/lib/kiosk"
    history_days: float = 400.0  # audit log and delivered entries older than this are pruned


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = ""
    key: str = ""
    secret: str = field(default="", repr=False)
    secret_file: str = ""
    timezone: str = "UTC"  # "UTC" or "local": how stamps are written to the API
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    allow_insecure_http: bool = False
    ca_bundle: str = ""
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    probe_interval: float = 5.0  # while backing off, check connectivity this often
    settle_seconds: float = 60.0  # an ambiguous attempt is looked up no sooner than this
    request_deadline: float = 30.0  # one request, connect to the last byte of the answer, at most this long

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.key and self.secret)


@dataclass(frozen=True)
class ReaderSettings:
    type: str = "mfrc522"  # mfrc522 | stdin | keyboard
    spi_bus: int = 0
    spi_device: int = 0
    reset_pin: int = 25  # BCM numbering (physical pin 22)
    poll_interval: float = 0.1  # seconds between idle polls
    release_seconds: float = 0.3  # a card unseen this long has left the field
    device: str = ""  # keyboard: /dev/input/by-id/... path


@dataclass(frozen=True)
class BadgeSettings:
    decimal_byte_order: str = "little"  # 10-digit decimals typed by USB readers


@dataclass(frozen=True)
class FeedbackSettings:
    type: str = "gpio"  # gpio | console | display | none
    devices: tuple[str, ...] = ()  # several at once, e.g. ("gpio", "display"); when set, replaces type
    leds: str = "pair"  # pair | rgb | none
    green_pin: int = 17
    red_pin: int = 27
    blue_pin: int = 22
    buzzer: str = "active"  # active | passive | none
    buzzer_pin: int = 18


@dataclass(frozen=True)
class DisplaySettings:
    """A small display at the door (luma); used when feedback.type or feedback.devices says "display"."""

    driver: str = "ssd1306"  # ssd1306 | sh1106 (I2C OLED) | st7735 | ili9341 (SPI LCD) | dummy (in memory)
    width: int = 0  # 0, 0: the driver's usual size (128x64 OLED, 160x128 ST7735, 320x240 ILI9341)
    height: int = 0
    rotate: int = 0  # quarter turns clockwise, 0..3
    i2c_port: int = 1  # /dev/i2c-1: SDA GPIO2 (pin 3), SCL GPIO3 (pin 5)
    i2c_address: int = 0x3C
    spi_port: int = 0
    spi_device: int = 1  # CE1 (pin 26): the RC522 has CE0
    dc_pin: int = 24  # SPI LCD data/command, BCM (pin 18)
    reset_pin: int = 23  # SPI LCD reset, BCM (pin 16); the RC522's is 25
    backlight_pin: int = 12  # SPI LCD backlight, BCM (pin 32); -1: wired to 3V3, not switched
    contrast: int = 255  # OLED brightness 0..255
    dim_contrast: int = 16  # after dim_after_seconds without a tap
    dim_after_seconds: float = 60.0  # 0: never dim
    blank_after_seconds: float = 0.0  # 0: never blank (an OLED lasts longer blanked at night)
    shift_pixels: int = 2  # move the idle screen by up to this many pixels (burn-in care); 0: never
    shift_seconds: float = 60.0  # how often
    tap_seconds: float = 4.0  # how long a tap's screen stays (a long name stays until it has scrolled by)
    clock: str = "24h"  # 24h | 12h
    font: str = ""  # a TrueType/OpenType file for names and text (e.g. a CJK font); "": DejaVu Sans


@dataclass(frozen=True)
class ClockSettings:
    # What says the clock is synchronised: the kernel's NTP state (timesyncd, chrony, ntpd),
    # a file (sync_file), or nothing (trust the local clock). Without "source", an old
    # config's sync_file decides: "" means "none", a path means "file" (see from_dict).
    source: str = "kernel"
    # Exists once systemd-timesyncd has synchronised the clock (source "file").
    sync_file: str = DEFAULT_SYNC_FILE
    # While the source says unsynchronised, TimeTrack's Date header (verified TLS) vouches for the
    # clock when within this many seconds, and corrects the stamps when further off.
    max_skew_seconds: float = 10.0
    server_date: bool = True  # use TimeTrack's Date header as that evidence at all


@dataclass(frozen=True)
class MetricsSettings:
    # The Prometheus textfile (node_exporter's textfile collector), rewritten atomically; "" = off.
    textfile: str = ""


@dataclass(frozen=True)
class Settings:
    path: str | None = None
    kiosk: KioskSettings = field(default_factory=KioskSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    reader: ReaderSettings = field(default_factory=ReaderSettings)
    badges: BadgeSettings = field(default_factory=BadgeSettings)
    rules: Rules = field(default_factory=Rules)  # the decision rules' own settings
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    display: DisplaySettings = field(default_factory=DisplaySettings)
    clock: ClockSettings = field(default_factory=ClockSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    @property
    def store_path(self) -> Path:
        return Path(self.kiosk.state_dir) / "kiosk.sqlite"

    def masked(self) -> dict[str, dict[str, Any]]:
        """The effective configuration with secrets masked (``kiosk config check``)."""
        out: dict[str, dict[str, Any]] = {}
        for section in SECTIONS:
            values = {f.name: getattr(getattr(self, section), f.name) for f in fields(SECTIONS[section])}
            if section == "api" and values["secret"]:
                values["secret"] = "********"
            out[section] = values
        return out


SECTIONS: dict[str, type] = {
    "kiosk": KioskSettings,
    "api": ApiSettings,
    "reader": ReaderSettings,
    "badges": BadgeSettings,
    "rules": Rules,
    "feedback": FeedbackSettings,
    "display": DisplaySettings,
    "clock": ClockSettings,
    "metrics": MetricsSettings,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "api.timezone": ("UTC", "local"),
    "reader.type": ("mfrc522", "stdin", "keyboard"),
    "badges.decimal_byte_order": ("little", "big"),
    "feedback.type": FEEDBACK_KINDS,
    "feedback.devices": FEEDBACK_KINDS,  # each item
    "display.driver": DISPLAY_DRIVERS,
    "display.clock": ("24h", "12h"),
    "feedback.leds": ("pair", "rgb", "none"),
    "feedback.buzzer": ("active", "passive", "none"),
    "clock.source": ("kernel", "file", "none"),
}
NON_NEGATIVE = {
    "api.connect_timeout", "api.read_timeout", "api.backoff_initial", "api.backoff_max",
    "api.probe_interval", "api.settle_seconds", "reader.poll_interval", "reader.release_seconds",
    "clock.max_skew_seconds", "rules.debounce_seconds", "rules.min_session_seconds", "reader.spi_bus",
    "reader.spi_device", "reader.reset_pin", "feedback.green_pin", "feedback.red_pin",
    "feedback.blue_pin", "feedback.buzzer_pin",
    "display.width", "display.height", "display.rotate", "display.i2c_port", "display.spi_port",
    "display.spi_device", "display.dc_pin", "display.reset_pin", "display.contrast", "display.dim_contrast",
    "display.dim_after_seconds", "display.blank_after_seconds", "display.shift_pixels", "display.shift_seconds",
}
POSITIVE = {"rules.max_session_hours", "api.connect_timeout", "api.read_timeout", "api.request_deadline",
            "kiosk.history_days", "display.tap_seconds"}
MINIMUM = {"display.backlight_pin": -1, "display.i2c_address": 0x03}
SENSITIVE = {"api.secret"}  # never echoed in an error message
# Upper bounds: far beyond any sensible value, well below what overflows a wait or a date.
MAXIMUM = {
    "kiosk.history_days": 36500.0, "api.connect_timeout": 3600.0, "api.read_timeout": 3600.0,
    "api.backoff_initial": 86400.0, "api.backoff_max": 86400.0, "api.probe_interval": 3600.0,
    "api.settle_seconds": 86400.0, "api.request_deadline": 3600.0, "clock.max_skew_seconds": 86400.0,
    "reader.poll_interval": 60.0, "reader.release_seconds": 60.0,
    "rules.debounce_seconds": 3600.0, "rules.min_session_seconds": 7 * 86400.0,
    "rules.max_session_hours": 31 * 24.0,
    "display.rotate": 3, "display.i2c_address": 0x77, "display.contrast": 255, "display.dim_contrast": 255,
    "display.dc_pin": 27, "display.reset_pin": 27, "display.backlight_pin": 27, "display.i2c_port": 255,
    "display.spi_port": 255, "display.spi_device": 255, "display.width": 4096, "display.height": 4096,
    "display.dim_after_seconds": 7 * 86400.0, "display.blank_after_seconds": 7 * 86400.0,
    "display.shift_pixels": 4, "display.shift_seconds": 86400.0, "display.tap_seconds": 60.0,
}


