"""Shared fixtures: real files in tmp_path. Helpers for the real `kiosk` process live in kioskproc.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def write_config(tmp_path):
    """Write a kiosk.toml (dedented) and return its path."""

    def write(text: str, name: str = "kiosk.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        path.chmod(0o640)  # it may hold the API secret: not for everyone
        return path

    return write


def pytest_addoption(parser):
    parser.addoption("--torture-long", action="store_true", default=False,
                     help="run the torture tests (-m torture) at full length: 200 kills, more fuzzing examples")


def pytest_configure(config):
    from . import torture_support

    torture_support.LONG = bool(config.getoption("--torture-long"))


def pytest_collection_modifyitems(config, items):
    """Long runs (marked ``slow``) only when asked for with ``-m slow``; the normal run has bounded versions."""
    if config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
