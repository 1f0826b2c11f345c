"""The API secret: from the configuration, ``api.secret_file`` or the systemd credential, never from a file others may read."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

from kiosk.config.sections import ApiSettings
from kiosk.exc import ConfigError

CREDENTIAL_NAME = "timetrack-secret"


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


