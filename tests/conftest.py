"""Shared fixtures: real files in tmp_path, and a helper to write kiosk configs."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_config(tmp_path):
    """Write a kiosk.toml (dedented) and return its path."""

    def write(text: str, name: str = "kiosk.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        path.chmod(0o640)  # it may hold the API secret: not for everyone
        return path

    return write


@pytest.fixture
def kiosk_env(tmp_path):
    """Environment for running the real `kiosk` command in a subprocess."""
    env = dict(os.environ)
    env.pop("KIOSK_CONFIG", None)
    env.pop("NOTIFY_SOCKET", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


KIOSK = [sys.executable, "-m", "kiosk"]
