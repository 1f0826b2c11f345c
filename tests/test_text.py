"""Names, escapes and server words: kiosk.text."""

from __future__ import annotations

import pytest

from kiosk.exc import KioskError
from kiosk.text import InvalidText, clean_name, escape, mask, untrusted


@pytest.mark.parametrize("raw, clean", [
    ("anna", "anna"), ("Zoë", "Zoë"), ("e\u0301mile", "\u00e9mile"), ("ｄｏｒａ", "ｄｏｒａ"),
    ("anna.b@example.com", "anna.b@example.com"), ("Анна Петрова", "Анна Петрова"), ("x" * 100, "x" * 100),
])
def test_clean_name_accepts_and_normalises(raw, clean):
    assert clean_name(raw) == clean


@pytest.mark.parametrize("raw, words", [
    ("an\u200bna", ["character 3", "U+200B ZERO WIDTH SPACE"]),
    ("anna\x1b[2J", ["character 5", "control character", "U+001B"]),
    ("ann\u00a0a", ["character 4", "NO-BREAK SPACE"]),
    ("\u2066anna", ["character 1", "LEFT-TO-RIGHT ISOLATE"]),
    ("a\u3164", ["character 2", "HANGUL FILLER"]),
    (" anna", ["leading spaces"]),
    ("anna ", ["trailing spaces"]),
    ("", ["empty"]),
    ("x" * 101, ["101 characters", "at most 100"]),
    ("x" * 100_000, ["100000 characters"]),
])
def test_clean_name_refuses_with_character_and_position(raw, words):
    with pytest.raises(InvalidText) as info:
        clean_name(raw)
    assert isinstance(info.value, KioskError) and isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)
    assert "\x1b" not in str(info.value) and len(str(info.value)) < 300


def test_escape_is_one_printable_line_and_cuts_long_text():
    assert escape("plain text") == "plain text"
    assert escape("a\x1b[31mb\u200bc\nd\\") == "a\\x1b[31mb\\u200bc\\x0ad\\\\"
    long = escape("9" * 10_000, limit=64)
    assert long.startswith("9" * 64) and long.endswith("(10000 characters)") and len(long) < 100
    assert escape("\U0001f604") == "\U0001f604" and escape("\U000e0001") == "\\U000e0001"


def test_untrusted_masks_secrets_strips_controls_and_cuts():
    secret, key = "Sup3r-S3cret", "the-key"
    text = f"<h1>\x1b[2Jerror</h1>\r\nheaders: X-TimeTrack-Api-Secret: {secret}; X-TimeTrack-Api-Key: {key}" + "x" * 500
    out = untrusted(text, secrets=[secret, key])
    assert secret not in out and key not in out and "********" in out
    assert "\x1b" not in out and "\n" not in out and "\r" not in out
    assert len(out) == 300 and out.endswith("…")
    assert mask("ab ab", ["ab", ""]) == "******** ********"
