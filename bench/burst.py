"""The morning rush: 200 employees tapping one kiosk within 2 minutes, at random, some twice.

One ``kiosk run`` (production rules: 3 s debounce, 60 s minimum session),
the API up (an emulator in its own process). Half the staff were clocked in
8 hours before (the night shift leaving: their tap clocks out and queues an
entry, so the sender posts during the rush). Each employee taps once at a
random moment of the window; a quarter tap again 0.3 to 2 s later (the card
bounced: REPEAT), a tenth come back 5 to 20 s later (TOO SOON after clocking
in, or a new clock-in after clocking out). One reader: a tap is written at
its moment, or as soon as the previous one was answered.

Every answer is checked against the rules' model (computed from the moments
the taps were written), and at the end the emulator must hold exactly one
entry per clock-out. The echo and commit floors (:mod:`bench.floors`) answer the
same badge id right after each tap. ``--quick`` compresses the window to 30 s (the same 200
employees, four times as dense) and says so in the result.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench import stores
from bench.procs import EmulatorProcess, LineProcess, base_env, kiosk_process, write_config
from bench.stats import summary_ms

DEBOUNCE, MIN_SESSION = 3.0, 60.0


def schedule(rng: random.Random, window: float) -> list[tuple[float, int]]:
    """(seconds from the start, employee) for every tap, in time order."""
    taps = []
    for i in range(stores.STAFF):
        at = rng.uniform(0, window)
        taps.append((at, i))
        if rng.random() < 0.25:
            taps.append((at + rng.uniform(0.3, 2.0), i))
        if rng.random() < 0.10:
            taps.append((at + rng.uniform(5.0, 20.0), i))
    return sorted(taps)


def expected(state: dict, employee: int, now: float) -> str:
    """The answer's first word by the rules, updating the model ``state``."""
    person = state.setdefault(employee, {"open": None, "last": None})
    last, person["last"] = person["last"], now  # any recorded tap restarts the debounce
    if last is not None and now - last < DEBOUNCE:
        return "REPEAT"
    if person["open"] is not None and now - person["open"] < MIN_SESSION:
        return "TOO"
    if person["open"] is not None:
        person["open"] = None
        return "OUT"
    person["open"] = now
    return "IN"


def measure(workdir: Path, *, window: float, seed: Path, rng: random.Random, log=print) -> dict:
    from kiosk import clock
    from kiosk.rules import TapKind, TapOutcome
    from kiosk.store import Store

    state_dir = workdir / "burst"
    path = stores.copy(seed, state_dir)
    night = clock.utcnow() - timedelta(hours=8)
    model: dict = {}
    with Store(path, create=False) as store:
        for i in range(0, stores.STAFF, 2):
            store.record(TapOutcome(TapKind.CLOCK_IN, stores.uid(i), night, f"employee{i:03d}"))
            model[i] = {"open": -8 * 3600.0, "last": None}
    plan = schedule(rng, window)
    times, unexpected, waited, outs = [], [], 0, 0
    with EmulatorProcess(workdir, name="emulator-burst") as emu:
        config = write_config(workdir / "burst.toml", state_dir, emu.url,
                              rules=f"debounce_seconds = {DEBOUNCE:g}\nmin_session_seconds = {MIN_SESSION:g}")
        proc = kiosk_process(config, name="burst")
        floors = {"echo": LineProcess([sys.executable, "-m", "bench.floors", "echo"], env=base_env(),
                                      stderr=workdir / "burst-echo.log", name="echo"),
                  "commit": LineProcess([sys.executable, "-m", "bench.floors", "commit",
                                         str(workdir / "burst-floor.sqlite")], env=base_env(),
                                        stderr=workdir / "burst-commit.log", name="commit")}
        floor: dict[str, list[float]] = {"echo": [], "commit": []}
        try:
            proc.tap(stores.uid(stores.STAFF + 1), timeout=60)  # an unknown badge: up and answering
            log(f"burst: {len(plan)} taps of {stores.STAFF} employees within {window:g} s")
            start = time.monotonic()
            for at, employee in plan:
                delay = start + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    waited += 1
                want = expected(model, employee, time.monotonic() - start)
                seconds, line = proc.tap(stores.uid(employee))
                times.append(seconds)
                for name, process in floors.items():  # the machine's noise, right after each tap
                    floor[name].append(process.tap(stores.uid(employee))[0])
                outs += want == "OUT"
                if line.split()[0] != want:
                    unexpected.append(f"employee{employee:03d}: expected {want}, got {line}")
            deadline = time.monotonic() + 120
            while emu.creates() < outs and time.monotonic() < deadline:
                time.sleep(0.1)
            delivered = emu.creates()
        finally:
            code = proc.stop()
            for process in floors.values():
                process.stop()
    counts: dict[str, int] = {}
    for line in proc.lines[1:]:
        counts[line.split()[0]] = counts.get(line.split()[0], 0) + 1
    return {**summary_ms(times), "window_s": window, "compressed": window < 120, "taps": len(plan),
            "answers": counts, "floors_ms": {k: summary_ms(v) for k, v in floor.items()},
            "unexpected": unexpected[:10], "unexpected_count": len(unexpected),
            "taps_delayed_by_previous": waited, "clock_outs": outs, "delivered": delivered,
            "all_handled": not unexpected and len(times) == len(plan) and delivered == outs, "exit_code": code}
