"""Time from process start to READY=1 and to the first tap answered, on a fresh store and with a backlog.

Each run starts ``kiosk run`` with a NOTIFY_SOCKET we bind (as systemd does
for ``Type=notify``) and writes a badge id to its stdin at once, as a person
tapping while the kiosk boots: the id waits in the pipe until the reader
takes it. Runs alternate fresh and backlog (API down for both, the same
config), each on a new copy of its store; the page cache is warm after the
first run, as on a kiosk restarted by systemd (a cold boot on an SD card is
slower, and not measured here). The figure is the median of the runs; the
slowest is reported next to it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench import stores
from bench.procs import NotifySocket, closed_port, kiosk_process, write_config


def one(workdir: Path, name: str, seed: Path, url: str) -> dict:
    state = workdir / name
    stores.copy(seed, state)
    config = write_config(workdir / f"{name}.toml", state, url)
    notify = NotifySocket(workdir / f"{name}.notify")
    try:
        proc = kiosk_process(config, name=name, notify=notify)
        try:
            proc.send(stores.uid(1))
            answered, line = proc.answer(timeout=120)
            ready = notify.first("READY=1", timeout=60)
        finally:
            proc.stop()
    finally:
        notify.close()
    if not line.startswith("IN  "):
        raise RuntimeError(f"{name}: first tap answered {line!r}")
    first_tap = answered - proc.started_perf
    return {"ready_s": None if ready is None else round(ready - proc.started, 3), "first_tap_s": round(first_tap, 3)}


def measure(workdir: Path, *, runs: int, seed: Path, backlog_seed: Path, log=print) -> dict:
    """``runs`` starts of each, alternating; medians and maxima in seconds."""
    url = f"http://127.0.0.1:{closed_port()}/api/v2/ext"
    results: dict[str, list[dict]] = {"fresh": [], "backlog": []}
    log(f"startup: {runs} starts each, fresh and backlog alternating")
    for i in range(runs):
        for size, store in (("fresh", seed), ("backlog", backlog_seed)) if i % 2 == 0 else \
                (("backlog", backlog_seed), ("fresh", seed)):
            results[size].append(one(workdir, f"start-{size}-{i}", store, url))
    out = {}
    for size, runs_ in results.items():
        ready = [r["ready_s"] for r in runs_ if r["ready_s"] is not None]
        first = [r["first_tap_s"] for r in runs_]
        out[size] = {"ready_s": round(statistics.median(ready), 3) if ready else None,
                     "ready_s_max": max(ready) if ready else None,
                     "first_tap_s": round(statistics.median(first), 3), "first_tap_s_max": max(first),
                     "runs": len(runs_), "ready_missing": len(runs_) - len(ready)}
    return out
