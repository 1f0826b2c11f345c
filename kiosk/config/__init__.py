"""TOML configuration -> validated, typed settings; secret loading.

The rooms: :mod:`~kiosk.config.sections` (one dataclass per section, and the
bounds of each value), :mod:`~kiosk.config.values` (the checks of values and
across keys), :mod:`~kiosk.config.secrets` (the API secret); this module reads
the file and puts the settings together.

Every key's type and default come from its section's dataclass, its bounds from
the tables beside it, so validation and ``kiosk config check`` stay in step.
Errors name the file, the key and the reason (exit code 78, EX_CONFIG), and
nothing starts.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import replace
from typing import Any

from kiosk.config.secrets import CREDENTIAL_NAME, _load_secret, read_secret_file
from kiosk.config.sections import (
    DEFAULT_SYNC_FILE,
    SECTIONS,
    ApiSettings,
    BadgeSettings,
    ClockSettings,
    DisplaySettings,
    FeedbackSettings,
    KioskSettings,
    MetricsSettings,
    ReaderSettings,
    Settings,
)
from kiosk.config.values import (
    _check_across,
    _check_api,
    _section,
    check_base_url,
    is_loopback,
)
from kiosk.exc import EX_CONFIG, ConfigError, InsecureURL

__all__ = [
    "CREDENTIAL_NAME", "DEFAULT_PATH", "DEFAULT_SYNC_FILE", "EX_CONFIG", "SECTIONS", "ApiSettings", "BadgeSettings",
    "ClockSettings", "ConfigError", "DisplaySettings", "FeedbackSettings", "InsecureURL", "KioskSettings",
    "MetricsSettings", "ReaderSettings", "Settings", "check_base_url", "from_dict", "is_loopback", "load",
    "read_secret_file", "resolve_path",
]

DEFAULT_PATH = "/etc/kiosk/kiosk.toml"


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
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib lets this one through
        raise ConfigError(path, None, f"not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None
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


