"""Sysadmin commands at scale: badge import, the audit log with a year of history, queue list at 100,000.

    python bench/admin.py [--badges 10000] [--audit 250000] [--queue 100000]

Every figure is a real `kiosk` process on a real store (wall time; peak RSS as the
process's own VmHWM). The import is also timed in-process for the one write
transaction it holds, the longest a tap could wait on it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk.model import OutboxEntry, to_iso  # noqa: E402
from kiosk.store import Store  # noqa: E402
from kiosk.store.db import key  # noqa: E402
from tests.kioskproc import KIOSK, clean_env, closed_port, write_config  # noqa: E402
from tests.test_sysadmin_scale import peak_rss_kb  # noqa: E402


# A second process committing a small transaction every 10 ms, like a daemon taking taps; it prints
# how long each took (waiting for the import's write lock included).
WRITER = """
import signal, sys, time
from kiosk.store import Store
store = Store(sys.argv[1], create=False)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    start = time.monotonic()
    store.set_status("bench", start)
    print(time.monotonic() - start, flush=True)
    time.sleep(0.01)
"""


def timed(config: Path, *args: str) -> float:
    start = time.monotonic()
    subprocess.run([*KIOSK, "--config", str(config), *args], check=True, stdout=subprocess.DEVNULL,
                   env=clean_env(), timeout=600)
    return time.monotonic() - start


def csv_text(n: int, suffix: str = "") -> str:
    return "uid,username,label,enabled\n" + "".join(f"AB{i:06X},user{i}{suffix},desk {i},true\n" for i in range(n))


def bench_import(tmp: Path, n: int) -> None:
    config = write_config(tmp / "kiosk.toml", tmp / "state", f"http://127.0.0.1:{closed_port()}/api")
    path = tmp / "badges.csv"
    path.write_text(csv_text(n))
    print(f"badge import, {n} rows (a real `kiosk badge import`):")
    print(f"  first import (adds all)      {timed(config, 'badge', 'import', str(path)):6.2f} s")
    print(f"  same file again (unchanged)  {timed(config, 'badge', 'import', str(path)):6.2f} s")
    path.write_text(csv_text(n, suffix="x"))
    print(f"  every row changed, --replace {timed(config, 'badge', 'import', '--replace', str(path)):6.2f} s")
    print(f"  --dry-run --prune            {timed(config, 'badge', 'import', '--dry-run', '--prune', str(path)):6.2f} s")
    path.write_text(csv_text(n, suffix="y"))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp / "state" / "kiosk.sqlite")],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    took = timed(config, "badge", "import", "--replace", str(path))
    time.sleep(0.5)
    writer.terminate()
    waits = sorted(float(x) for x in writer.communicate()[0].split())
    print(f"  again, beside a writer       {took:6.2f} s; the writer's transactions (one every 10 ms, as taps): "
          f"median {waits[len(waits) // 2] * 1000:.1f} ms, max {waits[-1] * 1000:.0f} ms")


def bench_log(tmp: Path, n: int) -> None:
    config = write_config(tmp / "kiosk.toml", tmp / "state", f"http://127.0.0.1:{closed_port()}/api")
    start_at = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=365) / n
    with Store(tmp / "state" / "kiosk.sqlite") as store:
        for first in range(0, n, 10_000):
            with store.transaction() as db:
                db.update({key("audit", i + 1): {"id": i + 1, "kind": "clock_in" if i % 2 else "clock_out",
                                                 "at": to_iso(start_at + step * i), "username": f"user{i % 400}",
                                                 "uid": f"AB{i % 400:06X}", "tap_at": to_iso(start_at + step * i)}
                           for i in range(first, min(first + 10_000, n))})
        with store.transaction() as db:
            db["meta:seq"] = n
    week = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    may = (start_at + timedelta(days=180)).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"kiosk log, {n} audit lines over a year (400 people):")
    for args in (("log",), ("log", "--user", "user7"), ("log", "--badge", "AB000007", "--limit", "10"),
                 ("log", "--since", week, "--user", "user7"), ("log", "--until", may, "--limit", "20"),
                 ("log", "--user", "user7", "--limit", "0")):
        print(f"  {' '.join(args):44s} {timed(config, *args):6.2f} s")


def bench_queue(tmp: Path, n: int) -> None:
    config = write_config(tmp / "kiosk.toml", tmp / "state", f"http://127.0.0.1:{closed_port()}/api")
    t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
    with Store(tmp / "state" / "kiosk.sqlite") as store:
        for first in range(0, n, 10_000):
            with store.transaction() as db:
                db.update({key("outbox", i): OutboxEntry(i, f"user{i % 300}", "04A1B2C3", t0 + timedelta(hours=i),
                                                         t0 + timedelta(hours=i, minutes=30), notes="kiosk: b",
                                                         queued_at=t0).to_record()
                           for i in range(first + 1, min(first + 10_000, n) + 1)})
    print(f"kiosk queue list, {n} entries queued:")
    for args in (("--limit", "1"), ("--json", "--limit", "0"), ("--limit", "0"), ("--json",)):
        start = time.monotonic()
        rss, printed = peak_rss_kb(config, "queue", "list", *args)
        print(f"  queue list {' '.join(args):22s} {time.monotonic() - start:6.2f} s  peak RSS {rss / 1024:5.1f} MB"
              f"  {printed / 1e6:6.1f} MB printed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--badges", type=int, default=10_000)
    parser.add_argument("--audit", type=int, default=250_000)
    parser.add_argument("--queue", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("import", "log", "queue"):
            (Path(tmp) / sub).mkdir()
        bench_import(Path(tmp) / "import", args.badges)
        bench_log(Path(tmp) / "log", args.audit)
        bench_queue(Path(tmp) / "queue", args.queue)


if __name__ == "__main__":
    main()
