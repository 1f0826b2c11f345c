"""The examples in the public API's docstrings run (those not marked to skip)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kiosk.text", "kiosk.model", "kiosk.rules", "kiosk.feedback.console", "kiosk.feedback.gpio"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
