"""Listings stay in constant memory whatever the size of the store (issue #7: `queue list` took 400 MB at
100,000 entries). Measured as the peak RSS of the real `kiosk` process, against the same command showing
one row: the difference must not grow with the number of entries."""

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from kiosk.model import OutboxEntry, to_iso
from kiosk.store import Store
from kiosk.store.db import key

from .kioskproc import clean_env, closed_port, write_config

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def fill(path, entries: int, audit: int = 0) -> None:
    """``entries`` queued entries and ``audit`` audit lines, written in bulk."""
    with Store(path) as store:
        for start in range(0, entries, 5000):
            with store.transaction() as db:
                db.update({key("outbox", i): OutboxEntry(i, f"user{i % 300}", "04A1B2C3", T0 + timedelta(hours=i),
                                                         T0 + timedelta(hours=i, minutes=30), notes="kiosk: t",
                                                         queued_at=T0).to_record()
                           for i in range(start + 1, min(start + 5000, entries) + 1)})
        for start in range(0, audit, 5000):
            with store.transaction() as db:
                db.update({key("audit", 10_000_000 + i): {"id": 10_000_000 + i, "kind": "clock_in",
                                                          "at": to_iso(T0 + timedelta(minutes=5 * i)),
                                                          "username": f"user{i % 300}", "uid": "04A1B2C3"}
                           for i in range(start, min(start + 5000, audit))})


# The child's own peak: VmHWM of its memory map, read as it exits. (ru_maxrss would not do: on Linux
# it keeps the high-water mark of the memory map before exec, i.e. of this test process.)
PEAK = """
import atexit, re, sys
def peak():
    with open("/proc/self/status") as fh:
        sys.stderr.write("VmHWM " + re.search(r"VmHWM:\\s+(\\d+)", fh.read()).group(1) + "\\n")
atexit.register(peak)
from kiosk.cli import main
main(prog_name="kiosk")
"""


def peak_rss_kb(config, *args) -> tuple[int, int]:
    """(peak RSS in KiB, bytes printed) of one `kiosk` process."""
    proc = subprocess.Popen([sys.executable, "-c", PEAK, "--config", str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    printed = 0
    while chunk := proc.stdout.read(1 << 16):
        printed += len(chunk)
    err = proc.stderr.read().decode()
    assert proc.wait() == 0, (args, err)
    return int(re.search(r"VmHWM (\d+)", err).group(1)), printed


def check_constant_memory(tmp_path, entries: int, audit: int) -> None:
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api")
    fill(tmp_path / "state" / "kiosk.sqlite", entries, audit)
    for listing in (("queue", "list"), ("log",)):
        one, _ = peak_rss_kb(config, *listing, "--json", "--limit", "1")
        for fmt in (("--json",), ()):
            every, printed = peak_rss_kb(config, *listing, *fmt, "--limit", "0")
            assert printed > (entries if listing[0] == "queue" else audit) * 50  # it did print them all
            assert every - one < 20_000, (listing, fmt, every, one)  # KiB: no growth with the size


def test_listings_stream_in_constant_memory(tmp_path):
    check_constant_memory(tmp_path, entries=20_000, audit=20_000)


@pytest.mark.slow
def test_listings_stream_in_constant_memory_at_100000(tmp_path):
    check_constant_memory(tmp_path, entries=100_000, audit=100_000)
