"""How fast does the sender drain a backlog, against the practical ceiling?

For each N (default 1,000 and 10,000): queue N entries in a fresh store (through
the store's public tap path), then time

- ``bare``: a plain ``requests.Session`` POST loop of N entries (no store, no
  bookkeeping), once as requests does it by default and once with
  ``trust_env = False``;
- ``flush``: ``Sender.flush()`` (what ``kiosk queue flush`` runs);
- ``thread``: the daemon's background thread (``start`` + ``wake``) until the outbox is empty.

The table gives each time against both bare loops. The fairer ceiling is the
``trust_env=False`` one: the sender's client (kiosk/timetrack.py) honours the
environment like a default session (proxies, ``REQUESTS_CA_BUNDLE``) but reads it
once, when the session is built, and then sets ``trust_env = False``; a default
session scans the environment (proxies, netrc, CA variables) again on every
request, work the sender never does. The default loop is what a naive client
costs; beating it says little.

The emulator runs as a separate process (``python -c 'from kiosk.sim.emulator import serve ...'``,
in-memory data), so that its CPU time does not share this process's GIL, and its
data is reset before each run. Its API secret goes through its stdin, never its
command line (which every local user can read in ``ps``). Every run is checked:
exactly N new entries at the emulator.

    python bench/flush.py            # N = 1000 and 10000
    python bench/flush.py --n 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiosk import clock  # noqa: E402
from kiosk.config import ApiSettings  # noqa: E402
from kiosk.rules import TapKind, TapOutcome  # noqa: E402
from kiosk.delivery.sender import Sender  # noqa: E402
from kiosk.store import Store  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"
AUTH = {"X-TimeTrack-Api-Key": KEY, "X-TimeTrack-Api-Secret": SECRET}
BASE = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)

EMULATOR = """
import sys
from kiosk.sim.emulator import serve
secret = sys.stdin.readline().rstrip("\\n")  # never in argv
serve("127.0.0.1", int(sys.argv[1]), key=sys.argv[2], secret=secret, echo=lambda *a: None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorProcess:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v2/ext"
        self.admin = f"http://127.0.0.1:{self.port}/_emulator"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EMULATOR, str(self.port), KEY],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        self.proc.stdin.write(SECRET + "\n")
        self.proc.stdin.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(self.admin + "/stats", headers=AUTH, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.05)

    def reset(self) -> None:
        requests.post(self.admin + "/reset", headers=AUTH, timeout=10).raise_for_status()

    def count(self) -> int:
        return requests.get(self.admin + "/stats", headers=AUTH, timeout=10).json()["creates"]

    def unique(self) -> int:
        rows = requests.get(self.admin + "/entries", headers=AUTH, timeout=60).json()
        return len({(r["user"], r["from"], r["to"]) for r in rows})

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def entry_times(i: int) -> tuple[datetime, datetime]:
    start = BASE + timedelta(minutes=3 * i)
    return start, start + timedelta(minutes=2, milliseconds=i % 1000)


def fill(store: Store, n: int) -> None:
    for i in range(n):
        start, end = entry_times(i)
        store.record(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", start, "bench"))
        store.record(TapOutcome(TapKind.CLOCK_OUT, "04A1B2C3", end, "bench", since=start))


def bare(emu: EmulatorProcess, n: int, trust_env: bool) -> float:
    session = requests.Session()
    session.trust_env = trust_env
    session.headers.update(AUTH)
    url = emu.url + "/attendances"
    started = time.perf_counter()
    for i in range(n):
        start, end = entry_times(i)
        r = session.post(url, json={"username": "bench", "from": clock.to_api(start), "to": clock.to_api(end)},
                         timeout=(5, 15))
        r.raise_for_status()
        r.json()
    elapsed = time.perf_counter() - started
    session.close()
    return elapsed


def sender_run(emu: EmulatorProcess, n: int, mode: str, workdir: Path, store_seed: Path) -> float:
    path = workdir / f"{mode}-{n}-{time.monotonic_ns()}" / "kiosk.sqlite"
    path.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):  # a copy of the filled store: fresh, and no refill per run
        src = Path(str(store_seed) + suffix)
        if src.exists():
            Path(str(path) + suffix).write_bytes(src.read_bytes())
    api = ApiSettings(base_url=emu.url, key=KEY, secret=SECRET)
    with Store(path) as store:
        assert store.outbox_count() == n
        sender = Sender(store, api)
        started = time.perf_counter()
        if mode == "flush":
            summary = sender.flush()
            assert summary["delivered"] == n, summary
        else:
            sender.start()
            sender.wake()
            while store.outbox_count():  # polling competes for the store: not too often
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
        sender.stop(timeout=10)
        assert store.outbox_count() == 0 and len(store.delivered(limit=n + 1)) == n
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="entries to drain (repeatable; default 1000, 10000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the best one counts")
    args = parser.parse_args()
    sizes = args.n or [1000, 10000]
    emu = EmulatorProcess()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
            workdir = Path(tmp)
            for n in sizes:
                seed = workdir / f"seed-{n}" / "kiosk.sqlite"
                seed.parent.mkdir()
                t = time.perf_counter()
                with Store(seed) as store:
                    fill(store, n)
                print(f"queued {n} entries in {time.perf_counter() - t:.1f}s", file=sys.stderr)
                results = {}
                for label, run in (
                    ("bare requests loop", lambda: bare(emu, n, True)),
                    ("bare, trust_env=False", lambda: bare(emu, n, False)),
                    ("Sender.flush()", lambda: sender_run(emu, n, "flush", workdir, seed)),
                    ("Sender thread", lambda: sender_run(emu, n, "thread", workdir, seed)),
                ):
                    best = None
                    for _ in range(args.repeat):
                        emu.reset()
                        elapsed = run()
                        created, unique = emu.count(), emu.unique()
                        assert created == unique == n, (label, created, unique, n)
                        best = elapsed if best is None else min(best, elapsed)
                    results[label] = best
                default, fair = results["bare requests loop"], results["bare, trust_env=False"]
                for label, elapsed in results.items():
                    rows.append((n, label, elapsed, n / elapsed, default / elapsed, fair / elapsed))
    finally:
        emu.stop()
    print(f"\nemulator: separate process, in-memory; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print("speed as a share of each bare loop's (1.00: as fast; trust_env=False is the fairer ceiling)")
    print(f"{'N':>6}  {'what':<24} {'seconds':>8} {'entries/s':>10} {'vs bare':>8} {'vs bare trust_env=False':>24}")
    for n, label, elapsed, rate, ratio, fair_ratio in rows:
        print(f"{n:>6}  {label:<24} {elapsed:>8.2f} {rate:>10.0f} {ratio:>8.2f} {fair_ratio:>24.2f}")


if __name__ == "__main__":
    main()
