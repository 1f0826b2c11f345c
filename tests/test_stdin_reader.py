"""The stdin reader's bounded input, and a real `kiosk run` fed junk on stdin (issue 7).

Each junk line must come back as exactly one INVALID line, never with its raw
escape bytes or its whole text, in the output or the log, and the daemon must
go on answering badges afterwards.
"""

from __future__ import annotations

import doctest
import io
import os
import re
import threading
import time

import pytest

from kiosk import readers, text
from kiosk.readers import stdin as stdin_mod
from kiosk.readers.stdin import StdinReader

from .kioskproc import Daemon, closed_port, kiosk, kiosk_json, write_config

ANNA = "04A1B2C3"
BIG = 16 * 1024 * 1024


def taps_from_pipe(payload: bytes, **kwargs) -> tuple[list, float]:
    """Everything the reader yields for ``payload`` written to a pipe, and the CPU time it took."""
    read_end, write_end = os.pipe()

    def write():
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(read_end, "rb") as stream:
        reader = StdinReader(stream, tick=0.05, **kwargs)
        cpu = time.thread_time()
        taps = list(reader.taps(threading.Event()))
        cpu = time.thread_time() - cpu
    writer.join()
    return taps, cpu


# ---------------------------------------------------------------- the reader


def test_lines_comments_and_blanks():
    taps, _ = taps_from_pipe(b"04A1B2C3\n# comment\n\n  \r\n04:d5:e6\r\nlast-without-newline")
    assert taps == ["04A1B2C3", "04:d5:e6", "last-without-newline"]


def test_a_16_mb_line_is_one_invalid_in_linear_time():
    """Issue 7: 16 MB on one line took 33 s (bytes re-joined and re-split per 4 KB read)."""
    taps, cpu = taps_from_pipe(b"Z" * BIG + b"\n" + ANNA.encode() + b"\n")
    assert len(taps) == 2 and taps[1] == ANNA
    invalid = taps[0]
    assert isinstance(invalid, readers.Invalid)
    assert f"({BIG} bytes)" in invalid.reason and len(invalid.reason) < 200
    assert cpu < 1.0, f"{cpu:.2f} s of CPU for 16 MB"


def test_the_cap_is_exact_and_only_the_long_line_is_refused():
    cap = stdin_mod.MAX_LINE
    at_cap, over = b"x" * cap, b"y" * (cap + 1)
    taps, _ = taps_from_pipe(at_cap + b"\n" + over + b"\n" + over + b"\nok\n" + over)
    assert taps[0] == at_cap.decode()
    assert [type(t) for t in taps[1:]] == [readers.Invalid, readers.Invalid, str, readers.Invalid]
    assert taps[3] == "ok"
    assert all(f"({cap + 1} bytes)" in t.reason for t in taps if isinstance(t, readers.Invalid))


def test_long_lines_across_many_small_reads():
    """The pieces of a long line arrive in many reads; still one Invalid, and the next line whole."""
    read_end, write_end = os.pipe()
    reader = StdinReader(os.fdopen(read_end, "rb"), tick=0.05)
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(reader.taps(threading.Event())))
    thread.start()
    for _ in range(100):
        os.write(write_end, b"1" * 97)
    os.write(write_end, b"\n04A1")
    os.write(write_end, b"B2C3\n")
    os.close(write_end)
    thread.join(10)
    assert len(out) == 2 and isinstance(out[0], readers.Invalid) and "(9700 bytes)" in out[0].reason
    assert out[1] == ANNA


def test_invalid_utf8_is_one_invalid_not_a_crash():
    taps, _ = taps_from_pipe(b"\xff\xfe04A1B2C3\n\xc3\n04A1B2C3\n")
    assert [type(t) for t in taps] == [readers.Invalid, readers.Invalid, str]
    assert "not UTF-8" in taps[0].reason and "0xFF at 1" in taps[0].reason


def test_escape_sequences_are_shown_escaped():
    junk = "\x1b[2J\x1b]0;owned\x07" * 20  # 300 bytes: over the cap
    taps, _ = taps_from_pipe(junk.encode() + b"\n")
    (invalid,) = taps
    assert "\x1b" not in invalid.reason and "\x07" not in invalid.reason and "\\x1b[2J" in invalid.reason


def test_text_streams_without_a_file_descriptor():
    reader = StdinReader(io.StringIO("04A1B2C3\n" + "é" * 200 + "\n0xDEADBEEF"))
    taps = list(reader.taps(threading.Event()))
    assert taps[0] == ANNA and isinstance(taps[1], readers.Invalid) and "(400 bytes)" in taps[1].reason
    assert taps[2] == "0xDEADBEEF"


def test_stop_ends_taps_while_waiting():
    read_end, write_end = os.pipe()
    stop = threading.Event()
    reader = StdinReader(os.fdopen(read_end, "rb"), tick=0.02)
    thread = threading.Thread(target=lambda: list(reader.taps(stop)))
    thread.start()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    os.close(write_end)


def test_docstring_examples():
    assert doctest.testmod(stdin_mod).failed == 0


# ---------------------------------------------------------------- a real `kiosk run` fed junk


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("junk")
    config = write_config(tmp / "kiosk.toml", tmp / "state", f"http://127.0.0.1:{closed_port()}/api/v2/ext")
    kiosk(config, "badge", "add", ANNA, "anna")
    return config


def test_an_all_digit_uid_in_the_kiosks_own_spelling(tmp_path):
    """Issue 7: `badge add 12345678 dora` was refused, and the tap 12345678 was INVALID."""
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api/v2/ext")
    kiosk(config, "badge", "add", "12345678", "dora")
    kiosk(config, "badge", "add", "04112233445566", "emil")
    assert [b["uid"] for b in kiosk_json(config, "badge", "list")] == ["04112233445566", "12345678"]
    d = Daemon(config)
    d.tap("12345678")
    assert d.line().startswith("IN  dora ")
    d.tap("04112233445566")
    assert d.line().startswith("IN  emil ")
    assert d.close_input() == 0


JUNK = {
    "superscript two": "²".encode(),  # isdigit() but not int(): ended the daemon with exit 1
    "circled one": "①".encode(),
    "digit four comma": "🄄".encode(),
    "5000 digits": b"1" * 5000,  # over Python's int() limit: ended the daemon
    "fullwidth digits": "３２８３２６３７４８".encode(),  # was silently taken for badge 04A1B2C3's number
    "16 MB": b"Z" * BIG,  # quadratic: 33 s, taps waited
    "escape sequences": b"\x1b[2J\x1b]0;owned\x07\x1b[31m" * 8,  # was echoed whole into output and log
}


@pytest.mark.parametrize("name", list(JUNK))
def test_kiosk_run_answers_junk_with_one_invalid_and_goes_on(offline, name):
    junk = JUNK[name]
    d = Daemon(offline, log_level="INFO")
    try:
        d.tap(ANNA)
        first = d.line()
        assert re.match(r"(IN  anna|OUT anna) ", first), first
        start = time.monotonic()
        d.proc.stdin.write(junk + b"\n")
        d.proc.stdin.flush()
        answer = d.line(timeout=10)
        elapsed = time.monotonic() - start
        assert answer.startswith("INVALID "), answer
        assert len(answer) < 300
        d.tap(ANNA)  # taps after it are answered
        assert re.match(r"(IN  anna|OUT anna) ", d.line(timeout=10))
        assert d.close_input() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
    out = (first + "\n" + answer).encode()
    log = d.stderr_so_far()
    assert "invalid" in log  # the tap was logged ...
    probe = junk[:100]  # a long input must not appear whole: not even its first 100 bytes, in any rendering
    shown = probe.decode("utf-8", "replace")
    for where in (out, log.encode()):  # ... but neither there nor in the output raw, or whole if long
        assert b"\x1b" not in where and b"\x07" not in where
        if len(junk) > 64:
            assert probe not in where and text.escape(shown).encode() not in where
            assert repr(shown)[1:-1].encode() not in where
    assert len(log) < 20_000
    assert elapsed < 10
