"""``python -m bench [--quick] [--json] [--markdown] [--out FILE] [--from FILE]``: every measurement, one report.

Full run (``make bench``): 1,000 taps per case, 100,000 queued, 30 s idle,
10,000 entries drained in 3 paired rounds, the 2-minute burst, 5 starts per
store size: about 10 minutes on 2 cores. ``--quick``: 300 taps, 20,000 queued,
10 s idle, 2,000 entries in 2 rounds, the burst compressed to 30 s, 3 starts:
about 3 minutes. Progress goes to stderr; the report to stdout (JSON with
``--json``, the README's table with ``--markdown``, else both as text).
``--from FILE`` prints a saved report again without measuring; ``--readme
README.md`` puts its table into the README between the bench markers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import burst, flush, idle, procs, report, startup, stores, tap

FULL = {"taps": 1000, "backlog": 100_000, "idle": 30.0, "flush": 10_000, "flush_rounds": 3, "burst": 120.0,
        "starts": 5}
QUICK = {"taps": 300, "backlog": 20_000, "idle": 10.0, "flush": 2_000, "flush_rounds": 2, "burst": 30.0,
         "starts": 3}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(quick: bool, seed: int, workdir: Path) -> dict:
    size = QUICK if quick else FULL
    rng = random.Random(seed)
    machine = procs.machine()
    began = time.monotonic()
    log(f"stores: {stores.STAFF} badges, and {size['backlog']:,} entries queued")
    fresh = stores.fresh(workdir / "seed-fresh")
    backlog, fill_s = stores.with_backlog(fresh, workdir / "seed-backlog", size["backlog"])
    log(f"stores ready (backlog filled in {fill_s:.1f} s)")
    results = {
        "tap": tap.measure(workdir, taps=size["taps"], backlog_n=size["backlog"], seed=fresh,
                           backlog_seed=backlog, rng=rng, log=log),
        "startup": startup.measure(workdir, runs=size["starts"], seed=fresh, backlog_seed=backlog, log=log),
        "idle": idle.measure(workdir, seconds=size["idle"], seed=fresh, log=log),
        "flush": flush.measure(workdir, n=size["flush"], rounds=size["flush_rounds"], seed=fresh, rng=rng, log=log),
        "burst": burst.measure(workdir, window=size["burst"], seed=fresh, rng=rng, log=log),
    }
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = report.assemble(results, quick=quick, backlog_n=size["backlog"], machine=machine)
    out["seed"] = seed
    out["seconds"] = round(time.monotonic() - began, 1)
    log(f"done in {out['seconds']:.0f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI-sized run (about 3 minutes)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--markdown", action="store_true", help="print the README's table")
    parser.add_argument("--out", type=Path, help="also save the JSON report to this file")
    parser.add_argument("--from", dest="source", type=Path, help="print a saved report instead of measuring")
    parser.add_argument("--readme", type=Path, metavar="FILE",
                        help="replace the table between the bench markers in FILE (README.md) with this report's")
    parser.add_argument("--seed", type=int, default=20261130, help="random seed (tap order, gaps, burst plan)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (stores, logs)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target was missed")
    args = parser.parse_args(argv)
    if args.source:
        result = json.loads(args.source.read_text())
    else:
        workdir = Path(tempfile.mkdtemp(prefix="kiosk-bench-"))
        try:
            result = run(args.quick, args.seed, workdir)
        finally:
            if args.keep:
                log(f"work directory kept: {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.readme:
        report.update_readme(args.readme, result)
        log(f"{args.readme}: performance table updated")
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.markdown:
        print(report.markdown(result))
    else:
        print(report.text(result))
    return 1 if args.strict and result["targets_missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
