"""What each value may be: a key's type and bounds, the checks across keys, the API's base URL.

Each check raises :class:`~kiosk.exc.ConfigError` naming the file, the key and the reason.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from typing import Any
from urllib.parse import urlsplit

from kiosk.config.secrets import CREDENTIAL_NAME
from kiosk.config.sections import (
    CHOICES,
    MAXIMUM,
    MINIMUM,
    NON_NEGATIVE,
    POSITIVE,
    SENSITIVE,
    ApiSettings,
    Settings,
)
from kiosk.exc import ConfigError, InsecureURL
from kiosk.feedback.panels import PANELS, SPI, size_problem


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
