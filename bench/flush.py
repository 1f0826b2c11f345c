"""Draining a queue: a whole ``kiosk run`` against a bare ``requests.Session`` loop, paired and interleaved.

Each round runs both, in a random order, against the same emulator (its own
process, reset before each run):

- ``kiosk``: ``kiosk run`` on a copy of a store with N entries queued (API
  up), timed from its READY=1 (the sender starts just before it) until its
  outbox is empty (read from the store file, so that no polling request
  competes with the kiosk's at the emulator); then the emulator's entries are
  checked: exactly N, none twice;
- ``bare``: ``python -m bench.flush bare URL N`` in a process of its own, the
  practical ceiling: one ``requests.Session`` (``trust_env = False``, as the
  kiosk's client reads the environment once) posting N entries of the same
  shape back to back, timed from its first POST to its last answer.

``flush_ratio`` is the median over the rounds of the kiosk's entries per
second over the bare loop's (1.0: as fast as the bare loop); entries the
kiosk delivered before its READY=1 was read are left out of its count, so
they cannot flatter it. Every round's pair is reported.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.procs import AUTH, EmulatorProcess, NotifySocket, base_env, kiosk_process, write_config
from kiosk.store.db import STORE_NAME, TABLE

QUEUED = f"SELECT COUNT(*) FROM \"{TABLE}\" WHERE key >= 'outbox:' AND key < 'outbox;'"


def bare_loop(url: str, n: int) -> float:
    """POST ``n`` entries shaped like the kiosk's; seconds from the first POST to the last answer."""
    import requests

    session = requests.Session()
    session.trust_env = False
    session.headers.update(AUTH)
    start = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    bodies = []
    for i in range(n):
        begin = start + timedelta(hours=2 * i)
        bodies.append({"username": f"employee{i % 200:03d}", "from": begin.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                       "to": (begin + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                       "notes": "kiosk: bare"})
    target = url + "/attendances"
    started = time.perf_counter()
    for body in bodies:
        answer = session.post(target, json=body, timeout=(5, 15))
        answer.raise_for_status()
        answer.json()
    return time.perf_counter() - started


def run_bare(emu: EmulatorProcess, n: int) -> float:
    out = subprocess.run([sys.executable, "-m", "bench.flush", "bare", emu.url, str(n)], capture_output=True,
                         text=True, env=base_env(), timeout=3600, check=True)
    seconds = float(out.stdout.strip())
    if emu.creates() != n:
        raise RuntimeError(f"bare loop: {emu.creates()} entries at the emulator, expected {n}")
    return seconds


def run_kiosk(emu: EmulatorProcess, workdir: Path, name: str, seed: Path, n: int) -> tuple[float, int]:
    from bench import stores

    state = workdir / name
    stores.copy(seed, state)
    config = write_config(workdir / f"{name}.toml", state, emu.url)
    notify = NotifySocket(workdir / f"{name}.notify")
    proc = kiosk_process(config, name=name, notify=notify)
    try:
        ready = notify.first("READY=1", timeout=120)
        if ready is None:
            raise RuntimeError(f"{name}: no READY=1; {proc.stderr()[-2000:]}")
        early = emu.creates()  # delivered before READY=1 was read: left out of the kiosk's rate
        # Done when the kiosk's own outbox is empty (an entry leaves it only after the server's answer),
        # read from the store file: asking the emulator would put this loop's requests between the kiosk's.
        deadline = time.monotonic() + 3600
        outbox = sqlite3.connect(f"file:{state / STORE_NAME}?mode=ro", uri=True)
        try:
            while outbox.execute(QUEUED).fetchone()[0]:
                if time.monotonic() > deadline or proc.proc.poll() is not None:
                    raise RuntimeError(f"{name}: {emu.creates()} of {n} delivered; {proc.stderr()[-2000:]}")
                time.sleep(0.02)
            seconds = time.monotonic() - ready
        finally:
            outbox.close()
    finally:
        proc.stop()
        notify.close()
    entries = emu.entries()
    keys = {(e["user"], e["from"], e["to"]) for e in entries}
    if len(entries) != n or len(keys) != n:
        raise RuntimeError(f"{name}: {len(entries)} entries ({len(keys)} distinct) at the emulator, expected {n}")
    return seconds, early


def measure(workdir: Path, *, n: int, rounds: int, seed: Path, rng: random.Random, log=print) -> dict:
    """``rounds`` pairs, each in a random order; the median ratio and every pair."""
    from bench import stores

    queued, fill_s = stores.with_backlog(seed, workdir / "flush-seed", n)
    pairs = []
    with EmulatorProcess(workdir, name="emulator-flush") as emu:
        log(f"flush: {rounds} rounds of {n} entries, kiosk and bare loop in random order")
        for r in range(rounds):
            order = ["kiosk", "bare"]
            rng.shuffle(order)
            seconds, early = {}, 0
            for which in order:
                emu.reset()
                if which == "kiosk":
                    seconds[which], early = run_kiosk(emu, workdir, f"flush-{r}", queued, n)
                else:
                    seconds[which] = run_bare(emu, n)
            kiosk_rate, bare_rate = (n - early) / seconds["kiosk"], n / seconds["bare"]
            pairs.append({"order": order, "kiosk_s": round(seconds["kiosk"], 2), "bare_s": round(seconds["bare"], 2),
                          "delivered_before_ready": early, "ratio": round(kiosk_rate / bare_rate, 3)})
    return {"ratio": round(statistics.median(p["ratio"] for p in pairs), 3), "entries": n, "pairs": pairs,
            "kiosk_per_s": round(n / statistics.median(p["kiosk_s"] for p in pairs), 1),
            "bare_per_s": round(n / statistics.median(p["bare_s"] for p in pairs), 1)}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "bare":
        print(json.dumps(bare_loop(sys.argv[2], int(sys.argv[3]))))
    else:
        sys.exit("usage: python -m bench.flush bare URL N")
