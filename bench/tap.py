"""Tap latency as a person feels it: from writing a badge id to a ``kiosk run`` process to its feedback line.

Two phases, each interleaving its processes tap by tap (a round taps each
process once, in a new random order, then waits a random 5 to 20 ms), so a
burst of load from elsewhere on the machine lands on every case alike, and
the floors measured in the same rounds show how loud the machine was:

1. ``up`` (the emulator in its own process), ``down`` (connection refused),
   ``slow`` (an emulator that accepts at once and answers after 10 s; the
   kiosk's ``read_timeout`` is 5 s, so timeouts and the ambiguous-delivery
   path run), ``backlog`` (API down, N entries queued), ``display_broken``
   (API up, console plus an SSD1306 display whose every write raises,
   ``KIOSK_DISPLAY_SIM=broken``: the simulated bus raises on every write, so
   opening the panel fails and is retried with backoff; against ``up``, which
   has no display), ``display_hang`` (every write blocks: the drawing thread
   is stuck for good), and
   the ``echo`` and ``commit`` floors (:mod:`bench.floors`).
2. ``backlog_draining`` (N queued, API up: the sender drains the queue to an
   emulator of its own while the taps come) with ``fresh_draining`` (a fresh
   store against the same emulator) and the floors again.

Every kiosk has the 200-badge store, production settings except no debounce
and no minimum session (so taps alternate IN and OUT, and every second tap
queues an entry) and ``read_timeout = 5``. Each answer must be ``IN`` or
``OUT``; anything else is counted under ``unexpected``.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from bench import stores
from bench.procs import EmulatorProcess, LineProcess, base_env, closed_port, kiosk_process, rss_mb, write_config
from bench.stats import summary_ms

FLOORS = "bench.floors"
GAP = (0.005, 0.020)  # seconds between rounds


def floor_processes(workdir: Path, seed: Path, tag: str) -> dict[str, LineProcess]:
    """The echo and commit floors (the commit floor on a copy of the fresh store's directory)."""
    commit_db = workdir / f"floor-{tag}" / "floor.sqlite"
    commit_db.parent.mkdir(parents=True, exist_ok=True)
    return {
        "echo": LineProcess([sys.executable, "-m", FLOORS, "echo"], env=base_env(),
                            stderr=workdir / f"echo-{tag}.log", name="echo"),
        "commit": LineProcess([sys.executable, "-m", FLOORS, "commit", str(commit_db)], env=base_env(),
                              stderr=workdir / f"commit-{tag}.log", name="commit"),
    }


def kiosk(workdir: Path, name: str, seed: Path, url: str, *, display: str = "", env: dict | None = None,
          ) -> LineProcess:
    """A ``kiosk run`` on a copy of ``seed`` in ``workdir/name``."""
    state = workdir / name
    stores.copy(seed, state)
    feedback = 'type = "console"'
    extra = ""
    if display:
        feedback = 'devices = ["console", "display"]'
        extra = '[display]\ndriver = "ssd1306"\n'
        env = {**(env or {}), "KIOSK_DISPLAY_SIM": display}
    config = write_config(workdir / f"{name}.toml", state, url, feedback=feedback, extra=extra)
    return kiosk_process(config, name=name, **(env or {}))


def wait_ready(procs: dict[str, LineProcess], badge: str) -> None:
    """One warm-up tap each (not counted): every process is up and has answered once."""
    for proc in procs.values():
        proc.tap(badge, timeout=60)


def interleave(procs: dict[str, LineProcess], rounds: int, rng: random.Random, *,
               until=None) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """``rounds`` rounds of one tap per process in random order; seconds per tap and unexpected answers."""
    names = list(procs)
    times: dict[str, list[float]] = {n: [] for n in names}
    unexpected: dict[str, list[str]] = {n: [] for n in names}
    badges = stores.badges()
    for _ in range(rounds):
        rng.shuffle(names)
        badge = rng.choice(badges)
        for name in names:
            seconds, line = procs[name].tap(badge)
            times[name].append(seconds)
            if name not in ("echo", "commit") and not line.startswith(("IN  ", "OUT ")):
                unexpected[name].append(line)
        time.sleep(rng.uniform(*GAP))
        if until is not None and until():
            break
    return times, unexpected


def stop_all(procs: dict[str, LineProcess]) -> dict[str, int]:
    return {name: proc.stop() for name, proc in procs.items()}


def measure(workdir: Path, *, taps: int, backlog_n: int, seed: Path, backlog_seed: Path, rng: random.Random,
            log=print) -> dict:
    """Both phases; the figures for the report (latencies in ms, RSS in MB)."""
    result: dict = {"tap_latency_ms": {}, "unexpected": {}}
    down_url = f"http://127.0.0.1:{closed_port()}/api/v2/ext"
    first = stores.uid(0)

    # Phase 1: up, down, slow, backlog (API down), a broken display, and the floors.
    with EmulatorProcess(workdir, name="emulator-up") as up, \
            EmulatorProcess(workdir, "latency=10", name="emulator-slow") as slow:
        procs = floor_processes(workdir, seed, "main")
        procs.update({
            "up": kiosk(workdir, "up", seed, up.url),
            "down": kiosk(workdir, "down", seed, down_url),
            "slow": kiosk(workdir, "slow", seed, slow.url),
            "backlog": kiosk(workdir, "backlog", backlog_seed, down_url),
            "display_broken": kiosk(workdir, "display_broken", seed, up.url, display="broken"),
            "display_hang": kiosk(workdir, "display_hang", seed, up.url, display="hang"),
        })
        try:
            wait_ready(procs, first)
            log(f"tap: {taps} rounds over {', '.join(procs)}")
            times, unexpected = interleave(procs, taps, rng)
            rss = {name: rss_mb(procs[name].pid) for name in ("up", "backlog", "display_broken")}
            slow_stats = slow.stats()
        finally:
            codes = stop_all(procs)
    for name, values in times.items():
        summary = summary_ms(values)
        if name in ("echo", "commit"):
            result.setdefault("floors_ms", {})[name] = summary
        else:
            result["tap_latency_ms"][name] = summary
    result["unexpected"].update({k: v[:5] + ([f"... {len(v)} in all"] if len(v) > 5 else [])
                                 for k, v in unexpected.items() if v})
    result["rss"] = rss
    result["slow_server_requests"] = slow_stats.get("requests", 0)
    result["exit_codes"] = codes

    # Phase 2: a backlog draining to a live API, against a fresh store on the same API.
    with EmulatorProcess(workdir, name="emulator-drain") as drain:
        procs = floor_processes(workdir, seed, "drain")
        procs.update({
            "backlog_draining": kiosk(workdir, "backlog_draining", backlog_seed, drain.url),
            "fresh_draining": kiosk(workdir, "fresh_draining", seed, drain.url),
        })
        try:
            wait_ready(procs, first)
            deadline = time.monotonic() + 60
            while drain.creates() < 100 and time.monotonic() < deadline:  # the drain is under way
                time.sleep(0.05)
            before = drain.creates()
            started = time.monotonic()
            log(f"tap: {taps} rounds while {backlog_n} entries drain ({before} delivered before the first tap)")
            times, unexpected = interleave(procs, taps, rng)
            elapsed = time.monotonic() - started
            after = drain.creates()
            rss_drain = rss_mb(procs["backlog_draining"].pid)
        finally:
            codes = stop_all(procs)
    for name, values in times.items():
        key = "tap_latency_ms" if name.endswith("draining") else "floors_draining_ms"
        result.setdefault(key, {})[name] = summary_ms(values)
    result["unexpected"].update({k: v[:5] for k, v in unexpected.items() if v})
    result["drain"] = {
        "queued": backlog_n, "delivered_before_taps": before, "delivered_during_taps": after - before,
        "seconds": round(elapsed, 1), "still_draining_at_end": after < backlog_n + taps // 2,
        "entries_per_second": round((after - before) / elapsed, 1) if elapsed else None,
    }
    result["rss"]["backlog_draining"] = rss_drain
    result["exit_codes"].update(codes)
    return result
