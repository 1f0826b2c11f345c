"""How long does a tap take, from badge id to feedback, with the API up, down or hanging?

Runs the daemon's tap path (``Daemon.handle``: parse, decide, durable commit with
fsync, feedback) in-process against a real SQLite store in a temporary directory,
while the sender thread talks to (a) the TimeTrack emulator, (b) a closed port,
(c) a server that accepts connections and never answers. Prints median, p95 and
max per case: the three should be alike, since no tap waits on the network.

    python bench/tap.py            # 300 taps per case
    python bench/tap.py --taps 1000
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk import config  # noqa: E402
from kiosk.app import build  # noqa: E402
from kiosk.sim.emulator import Emulator  # noqa: E402
from kiosk.feedback import Feedback  # noqa: E402
from kiosk.readers.stdin import StdinReader  # noqa: E402
from kiosk.store import Store  # noqa: E402

USERS = [f"04A1B2{i:02X}" for i in range(20)]


def measure(base_url: str, taps: int, workdir: Path) -> list[float]:
    settings = config.from_dict({
        "kiosk": {"state_dir": str(workdir)},
        "api": {"base_url": base_url, "key": "k", "secret": "s", "read_timeout": 600},
        "reader": {"type": "stdin"}, "feedback": {"type": "none"},
        "rules": {"debounce_seconds": 0, "min_session_seconds": 0}, "clock": {"sync_file": ""},
    })
    with Store(settings.store_path) as store:
        for i, uid in enumerate(USERS):
            store.add_badge(uid, f"user{i}")
    daemon = build(settings, reader=StdinReader(open("/dev/null")), feedback=Feedback())
    daemon.sender.start()
    times = []
    try:
        for n in range(taps):
            uid = USERS[n % len(USERS)]
            time.sleep(0.002)  # a person's pace, and sessions longer than a millisecond
            started = time.perf_counter()
            daemon.handle(uid)
            times.append(time.perf_counter() - started)
    finally:
        daemon.sender.stop(timeout=1)
        daemon.store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the sender's "offline" line is expected here
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1024)  # never accepts: every POST hangs until the 600 s read timeout
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    rows = []
    with Emulator(key="k", secret="s") as emu, tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        cases = [("API up (emulator)", emu.url),
                 ("API down (refused)", f"http://127.0.0.1:{closed.getsockname()[1]}/api/v2/ext"),
                 ("API hanging", f"http://127.0.0.1:{hang.getsockname()[1]}/api/v2/ext")]
        for i, (label, url) in enumerate(cases):
            times = sorted(measure(url, args.taps, Path(tmp) / str(i)))
            rows.append((label, statistics.median(times), times[int(len(times) * 0.95)], times[-1]))
    print(f"tap path (parse, decide, commit with fsync, feedback), {args.taps} taps per case, ms")
    print(f"{'case':<22} {'median':>8} {'p95':>8} {'max':>8}")
    for label, med, p95, worst in rows:
        print(f"{label:<22} {med * 1000:>8.2f} {p95 * 1000:>8.2f} {worst * 1000:>8.2f}")


if __name__ == "__main__":
    main()
