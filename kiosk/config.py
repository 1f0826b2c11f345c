"""TOML configuration -> validated, typed settings; secret loading.

One schema table (``SCHEMA``) says every key, its type, default and check, so
validation, ``kiosk config check`` and the README stay in step. Errors name
the file, the key and the reason (exit code 78, EX_CONFIG), and nothing starts.
"""

from __future__ import annotations

import math
import os
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kiosk.exc import EX_CONFIG, ConfigError, InsecureURL
from kiosk.feedback import KINDS as FEEDBACK_KINDS
from kiosk.feedback.panels import DRIVERS as DISPLAY_DRIVERS, PANELS, SPI, size_problem
from kiosk.rules import Rules

DEFAULT_PATH = "/etc/kiosk/kiosk.toml"
CREDENTIAL_NAME = "timetrack-secret"
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


# ---------------------------------------------------------------- loading


def resolve_path(cli_path: str | None) -> str:
    """--config, else $KIOSK_CONFIG, else /etc/kiosk/kiosk.toml."""
    return cli_path or os.environ.get("KIOSK_CONFIG") or DEFAULT_PATH


def load(path: str | os.PathLike | None = None, *, require_api: bool = True) -> Settings:
    """Read, validate and return the settings at ``path`` (see :func:`resolve_path`)."""
    path = str(path) if path else resolve_path(None)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except PermissionError:
        raise ConfigError(path, None, "permission denied") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"invalid TOML: {exc}") from None
    return from_dict(raw, path=path, require_api=require_api)


def from_dict(raw: dict[str, Any], *, path: str | None = None, require_api: bool = True) -> Settings:
    """Validate a parsed TOML document; also used by the demo to build settings."""
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(path, name, f"unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(path, name, "must be a table, e.g. [" + name + "]")
        sections[name] = _section(path, name, SECTIONS[name], value)
    if "clock" in sections and "source" not in raw["clock"] and "sync_file" in raw["clock"]:
        # A config from before clock.source: sync_file = "" trusted the clock, another file than
        # timesyncd's was the check. timesyncd's own file (the old default, written out by the old
        # example config) is covered by the kernel's state, which chrony and ntpd keep too.
        sync_file = sections["clock"].sync_file
        source = "none" if not sync_file else "kernel" if sync_file == DEFAULT_SYNC_FILE else "file"
        sections["clock"] = replace(sections["clock"], source=source)
    api = _relative_paths(path, sections.get("api", ApiSettings()))
    sections["kiosk"] = _relative_state_dir(path, sections.get("kiosk", KioskSettings()))
    if api.secret and path and os.stat(path).st_mode & stat.S_IROTH:
        raise ConfigError(path, "api.secret", f"the file holds the API secret but everyone may read it; "
                          f"run: chmod o-rwx {path} (or move the secret to api.secret_file)")
    sections["api"] = _load_secret(path, api)
    _check_api(path, sections["api"], require_api)
    settings = Settings(path=path, **sections)
    _check_across(path, settings)
    return settings


def _relative_paths(path: str | None, api: ApiSettings) -> ApiSettings:
    """Relative file names in the config are relative to the config file, not the working directory."""
    if not path:
        return api
    base = os.path.dirname(os.path.abspath(path))
    changes = {key: os.path.join(base, getattr(api, key)) for key in ("secret_file", "ca_bundle")
               if getattr(api, key) and not os.path.isabs(getattr(api, key))}
    return replace(api, **changes) if changes else api


def _relative_state_dir(path: str | None, kiosk: KioskSettings) -> KioskSettings:
    """A relative ``state_dir`` is relative to the config file too: two shells in two working
    directories must not make two stores."""
    if not path or os.path.isabs(kiosk.state_dir):
        return kiosk
    return replace(kiosk, state_dir=os.path.join(os.path.dirname(os.path.abspath(path)), kiosk.state_dir))


def _check_across(path: str | None, settings: Settings) -> None:
    """Checks that involve more than one key."""
    rules = settings.rules
    if rules.max_session_hours * 3600 <= rules.min_session_seconds:
        raise ConfigError(path, "rules.max_session_hours",
                          f"{rules.max_session_hours:g}h is not longer than rules.min_session_seconds "
                          f"({rules.min_session_seconds:g}s): nobody could ever clock out")
    if settings.clock.source == "file" and not settings.clock.sync_file:
        raise ConfigError(path, "clock.sync_file", 'must name a file with clock.source = "file" '
                          '(or set clock.source = "none" to trust the local clock)')
    if settings.reader.type == "keyboard" and not settings.reader.device:
        raise ConfigError(path, "reader.device",
                          'missing: reader.type = "keyboard" needs the device path, e.g. '
                          '"/dev/input/by-id/usb-...-event-kbd"')
    _check_display(path, settings)


def _check_display(path: str | None, settings: Settings) -> None:
    """The display's size, font and pins, and that it shares no pin or SPI device with the rest."""
    devices = settings.feedback.devices
    if "none" in devices and len(devices) > 1:
        raise ConfigError(path, "feedback.devices", '"none" cannot be combined with other devices')
    display = settings.display
    problem = size_problem(display.driver, display.width, display.height, display.rotate)
    if problem:
        raise ConfigError(path, "display.width" if display.width or display.height else "display.driver", problem)
    if display.font and not os.path.isfile(display.font):
        raise ConfigError(path, "display.font", f"{display.font}: file not found")
    used = "display" in (devices or (settings.feedback.type,))
    if not used or PANELS[display.driver].bus != SPI:
        return
    reader = settings.reader
    if reader.type == "mfrc522" and (reader.spi_bus, reader.spi_device) == (display.spi_port, display.spi_device):
        raise ConfigError(path, "display.spi_device",
                          f"the reader uses /dev/spidev{reader.spi_bus}.{reader.spi_device} already; "
                          "wire the display's CS to the other chip select (CE1: spi_device = 1)")
    taken = {}
    if reader.type == "mfrc522":
        taken[reader.reset_pin] = "reader.reset_pin"
    feedback = settings.feedback
    if "gpio" in (devices or (feedback.type,)):
        if feedback.leds in ("pair", "rgb"):
            taken.update({feedback.green_pin: "feedback.green_pin", feedback.red_pin: "feedback.red_pin"})
        if feedback.leds == "rgb":
            taken[feedback.blue_pin] = "feedback.blue_pin"
        if feedback.buzzer != "none":
            taken[feedback.buzzer_pin] = "feedback.buzzer_pin"
    for key in ("dc_pin", "reset_pin", "backlight_pin"):
        pin = getattr(display, key)
        if pin < 0:
            continue
        if pin in taken:
            raise ConfigError(path, f"display.{key}", f"GPIO{pin} is {taken[pin]} already: give the display its own pin")
        taken[pin] = f"display.{key}"


def _section(path: str | None, name: str, cls: type, values: dict[str, Any]):
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{name}.{key}"
        if key not in known:
            raise ConfigError(path, dotted, f"unknown key (known: {', '.join(known)})")
        default = known[key].default
        kwargs[key] = _coerce(path, dotted, value, type(default))
    return cls(**kwargs)


def _coerce(path: str | None, dotted: str, value: Any, kind: type) -> Any:
    shown = "a value of the wrong type" if dotted in SENSITIVE else repr(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, dotted, f"must be true or false, not {shown}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, dotted, f"must be a whole number, not {shown}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, dotted, f"must be a number, not {shown}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(path, dotted, f"must be a finite number, not {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(path, dotted, f"must be a string, not {shown}")
    elif kind is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(path, dotted, f'must be a list of strings, e.g. ["gpio", "display"], not {shown}')
        for item in value:
            if dotted in CHOICES and item not in CHOICES[dotted]:
                raise ConfigError(path, dotted, f"each item must be one of {', '.join(CHOICES[dotted])}, not {item!r}")
        if len(set(value)) != len(value):
            raise ConfigError(path, dotted, f"lists a device twice: {value!r}")
        return tuple(value)
    if dotted in CHOICES and value not in CHOICES[dotted]:
        raise ConfigError(path, dotted, f"must be one of {', '.join(CHOICES[dotted])}, not {value!r}")
    if dotted in NON_NEGATIVE and value < 0:
        raise ConfigError(path, dotted, f"must not be negative, not {value!r}")
    if dotted in POSITIVE and value <= 0:
        raise ConfigError(path, dotted, f"must be greater than 0, not {value!r}")
    if dotted in MINIMUM and value < MINIMUM[dotted]:
        raise ConfigError(path, dotted, f"must be at least {MINIMUM[dotted]:g}, not {value!r}")
    if dotted in MAXIMUM and value > MAXIMUM[dotted]:
        raise ConfigError(path, dotted, f"must be at most {MAXIMUM[dotted]:g}, not {value!r}")
    if dotted == "kiosk.name" and not value.strip():
        raise ConfigError(path, dotted, "must not be empty")
    if dotted == "display.font" and value and not os.path.isabs(value):
        raise ConfigError(path, dotted, f"must be an absolute path, not {value!r}")
    if dotted == "kiosk.state_dir" and not value:
        raise ConfigError(path, dotted, "must not be empty")
    if dotted == "metrics.textfile" and value and (not os.path.isabs(value) or not value.endswith(".prom")):
        raise ConfigError(path, dotted, f"must be an absolute path ending in .prom (node_exporter reads only "
                          f"those), e.g. /var/lib/prometheus/node-exporter/kiosk.prom, not {value!r}")
    return value


def _load_secret(path: str | None, api: ApiSettings) -> ApiSettings:
    """Fill ``api.secret`` from the config, ``secret_file`` or the systemd credential."""
    if api.secret and api.secret_file:
        raise ConfigError(path, "api.secret_file", "set either api.secret or api.secret_file, not both")
    if api.secret:
        return api
    if api.secret_file:
        return replace(api, secret=read_secret_file(api.secret_file, path, "api.secret_file"))
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and os.path.exists(os.path.join(cred_dir, CREDENTIAL_NAME)):
        cred = os.path.join(cred_dir, CREDENTIAL_NAME)
        # systemd credentials are private to the service by construction.
        return replace(api, secret=_read_text(cred, path, f"credential {CREDENTIAL_NAME}"))
    return api


def read_secret_file(secret_path: str, path: str | None = None, key: str = "api.secret_file") -> str:
    """Read a secret file, refusing one that its group or others may read."""
    try:
        st = os.stat(secret_path)
    except FileNotFoundError:
        raise ConfigError(path, key, f"{secret_path}: file not found") from None
    except PermissionError:
        raise ConfigError(path, key, f"{secret_path}: permission denied") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            path, key,
            f"{secret_path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {secret_path}",
        )
    return _read_text(secret_path, path, key)


def _read_text(secret_path: str, path: str | None, key: str) -> str:
    try:
        text = Path(secret_path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, key, f"{secret_path}: cannot read ({exc.__class__.__name__})") from None
    if not text:
        raise ConfigError(path, key, f"{secret_path} is empty")
    return text


def check_base_url(base_url: str, allow_insecure_http: bool = False) -> str:
    """The API base URL without a trailing slash; ValueError (InsecureURL) saying why it is unusable.

    The one place the URL rules live: config validation and the API client both use it.
    """
    base = base_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, not {base_url!r}")
    if parts.username or parts.password:
        raise ValueError("must not contain credentials")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise InsecureURL(f"plain http:// to {parts.hostname} is only allowed for loopback hosts; "
                          "use https:// or set api.allow_insecure_http = true")
    return base


def _check_api(path: str | None, api: ApiSettings, required: bool) -> None:
    if api.base_url:
        try:
            check_base_url(api.base_url, api.allow_insecure_http)
        except ValueError as exc:
            raise ConfigError(path, "api.base_url", str(exc)) from None
    if api.ca_bundle and not os.path.exists(api.ca_bundle):
        raise ConfigError(path, "api.ca_bundle", f"{api.ca_bundle}: file not found")
    if not required:
        return
    for key in ("base_url", "key"):
        if not getattr(api, key):
            raise ConfigError(path, f"api.{key}", "missing (required)")
    if not api.secret:
        raise ConfigError(
            path, "api.secret",
            f"missing: set api.secret, api.secret_file, or the systemd credential {CREDENTIAL_NAME!r}",
        )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
