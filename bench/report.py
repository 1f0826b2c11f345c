"""The benchmark's figures as one JSON object, the targets with pass or fail, and a Markdown table.

Targets are those of issue #10, plus two of the same kind for the cases it
did not name (a draining backlog against a fresh store in the same phase, a
failing display against none), marked ``"source": "derived"``. A target is
judged on the figure as measured, never on a figure net of the floors: the
floors are there to show how loud the machine was (``noise``).
"""

from __future__ import annotations

import math
from typing import Any

from bench.stats import ratio

COMMAND = "make bench"  # = python -m bench --out bench/results.json
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
NOISY_ECHO_P99_MS = 2.0  # an echo through a pipe slower than this at p99: the machine was busy


def assemble(results: dict[str, Any], *, quick: bool, backlog_n: int, machine: dict) -> dict:
    """The report: every key the issue lists, details, targets."""
    tap = results["tap"]
    lat = tap["tap_latency_ms"]
    floors = tap["floors_ms"]
    out: dict[str, Any] = {"quick": quick, "machine": machine, "backlog_queued": backlog_n}
    out["tap_latency_ms"] = lat
    out["floors_ms"] = floors
    out["floors_draining_ms"] = tap["floors_draining_ms"]
    up = lat["up"]
    out["tap_vs_commit_floor"] = {q: ratio(up[q], floors["commit"][q]) for q in ("p50", "p99", "max")}
    out["tap_vs_echo_floor"] = {q: ratio(up[q], floors["echo"][q]) for q in ("p50", "p99", "max")}
    out["tap_unexpected_answers"] = tap["unexpected"]
    out["drain_during_taps"] = tap["drain"]
    out["slow_server_requests"] = tap.get("slow_server_requests")  # answered by the 10 s server during the taps
    idle = results["idle"]
    out["idle_cpu_percent"] = idle["daemon"]
    out["idle_cpu_percent_stock_library_10hz"] = idle["stock_library_10hz"]
    out["idle_seconds"] = idle["seconds"]
    rss = tap["rss"]
    out["rss_mb"] = rss["up"]["peak"]
    out["rss_mb_backlog"] = rss["backlog"]["peak"]
    out["rss_mb_detail"] = rss
    start = results["startup"]
    out["startup_s"] = start["fresh"]["ready_s"]
    out["startup_s_backlog"] = start["backlog"]["ready_s"]
    out["startup_detail"] = start
    out["flush_ratio"] = results["flush"]["ratio"]
    out["flush_detail"] = results["flush"]
    out["burst"] = results["burst"]
    out["display_broken_vs_none_p99"] = ratio(lat["display_broken"]["p99"], up["p99"])
    echo_p99 = max(floors["echo"]["p99"], tap["floors_draining_ms"]["echo"]["p99"])
    out["noise"] = {"echo_floor_p99_ms": echo_p99, "noisy": echo_p99 > NOISY_ECHO_P99_MS,
                    "loadavg_start": machine.get("loadavg_start"), "loadavg_end": machine.get("loadavg_end")}
    out["targets"] = targets(out)
    out["targets_missed"] = [t["name"] for t in out["targets"] if not t["pass"]]
    return out


def _target(name: str, value: float | None, op: str, limit: float, source: str = "issue 10") -> dict:
    ok = value is not None and not math.isnan(value) and (value <= limit if op == "<=" else value >= limit)
    return {"name": name, "value": value, "target": f"{op} {limit:g}", "pass": bool(ok), "source": source}


def targets(r: dict) -> list[dict]:
    lat = r["tap_latency_ms"]
    t = [_target(f"tap p99 {case} (ms)", lat[case]["p99"], "<=", 20) for case in ("up", "down", "slow", "backlog")]
    t.append(_target("tap p99 slow / up", ratio(lat["slow"]["p99"], lat["up"]["p99"]), "<=", 1.5))
    t.append(_target("tap p99 backlog / fresh (API down)", ratio(lat["backlog"]["p99"], lat["down"]["p99"]),
                     "<=", 2))
    t.append(_target("tap p99 draining backlog / fresh, same API (derived)",
                     ratio(lat["backlog_draining"]["p99"], lat["fresh_draining"]["p99"]), "<=", 2, "derived"))
    t.append(_target("tap p99 broken display / no display (derived)", r["display_broken_vs_none_p99"], "<=", 1.5,
                     "derived"))
    t.append(_target("idle CPU % (daemon, simulated MFRC522)", r["idle_cpu_percent"], "<=", 2))
    t.append(_target("RSS MB, fresh", r["rss_mb"], "<=", 40))
    t.append(_target("RSS MB, backlog", r["rss_mb_backlog"], "<=", 45))
    t.append(_target("startup s (to READY=1), fresh", r["startup_s"], "<=", 1.0))
    t.append(_target("startup s (to READY=1), backlog", r["startup_s_backlog"], "<=", 1.0))
    t.append(_target("flush ratio (kiosk / bare loop)", r["flush_ratio"], ">=", 0.9))
    burst = r["burst"]
    t.append({"name": "burst: every tap handled, every entry delivered", "value": burst["all_handled"],
              "target": "true", "pass": bool(burst["all_handled"]), "source": "issue 10"})
    t.append(_target("burst tap p99 (ms)", burst["p99"], "<=", 20))
    return t


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _lat(d: dict) -> str:
    return f"{d['p50']:.1f} / {d['p99']:.1f} / {d['max']:.1f}"


def markdown(r: dict) -> str:
    """The README's "Performance and guarantees" table, from one report."""
    m = r["machine"]
    lat, floors = r["tap_latency_ms"], r["floors_ms"]
    n = lat["up"]["n"]
    lines = [
        f"Measured on {m['cpu']} ({m['cores']} cores, {m['memory_gb']} GB), Python {m['python']}, Linux "
        f"{m['kernel']}; load average {m['loadavg_start'][0]:g} at the start, {m.get('loadavg_end', ['?'])[0]} at the "
        f"end{' (a busy machine: see the floors)' if r['noise']['noisy'] else ''}. "
        f"{'Quick run (`--quick`)' if r['quick'] else 'Full run'}: {n} taps per case, "
        f"{r['backlog_queued']:,} entries in the backlog. Reproduce with `{COMMAND}` (the JSON goes to "
        "`bench/results.json`), then `make bench-readme` puts the new table here.",
        "",
        "| what | measured | target | |",
        "| --- | --- | --- | --- |",
    ]
    by_name = {t["name"]: t for t in r["targets"]}

    def row(what: str, measured: str, name: str | None = None) -> None:
        t = by_name.get(name) if name else None
        lines.append(f"| {what} | {measured} | {t['target'] if t else ''} | "
                     f"{('pass' if t['pass'] else '**missed**') if t else ''} |")

    row("tap, API up: p50 / p99 / max ms", _lat(lat["up"]), "tap p99 up (ms)")
    row("tap, API down (refused)", _lat(lat["down"]), "tap p99 down (ms)")
    row("tap, API answers after 10 s", _lat(lat["slow"]), "tap p99 slow (ms)")
    row(f"tap, {r['backlog_queued']:,} queued, API down", _lat(lat["backlog"]), "tap p99 backlog (ms)")
    row("slow / up, p99", _fmt(ratio(lat["slow"]["p99"], lat["up"]["p99"])), "tap p99 slow / up")
    row("backlog / fresh (API down), p99", _fmt(ratio(lat["backlog"]["p99"], lat["down"]["p99"])),
        "tap p99 backlog / fresh (API down)")
    row(f"tap while {r['backlog_queued']:,} drain to the API", _lat(lat["backlog_draining"]))
    row("tap, fresh store, same API, same time", _lat(lat["fresh_draining"]))
    row("draining / fresh, p99", _fmt(ratio(lat["backlog_draining"]["p99"], lat["fresh_draining"]["p99"])),
        "tap p99 draining backlog / fresh, same API (derived)")
    row("tap, display failing on every write", _lat(lat["display_broken"]))
    if "display_hang" in lat:
        row("tap, display whose writes hang", _lat(lat["display_hang"]))
    row("failing display / no display, p99", _fmt(r["display_broken_vs_none_p99"]),
        "tap p99 broken display / no display (derived)")
    row("floor: durable SQLite commit, own process", _lat(floors["commit"]))
    row("floor: echo through a pipe", _lat(floors["echo"]))
    row("tap (up) / commit floor, p50 / p99",
        f"{_fmt(r['tap_vs_commit_floor']['p50'])} / {_fmt(r['tap_vs_commit_floor']['p99'])}")
    row("idle CPU %, daemon over the simulated MFRC522", _fmt(r["idle_cpu_percent"]),
        "idle CPU % (daemon, simulated MFRC522)")
    row("idle CPU %, stock mfrc522 library at 10 Hz", _fmt(r["idle_cpu_percent_stock_library_10hz"]))
    row("RSS MB (peak), fresh", _fmt(r["rss_mb"]), "RSS MB, fresh")
    row(f"RSS MB (peak), {r['backlog_queued']:,} queued", _fmt(r["rss_mb_backlog"]), "RSS MB, backlog")
    sd = r["startup_detail"]
    row("start to READY=1 s, fresh (median; slowest)", f"{sd['fresh']['ready_s']} ({sd['fresh']['ready_s_max']})",
        "startup s (to READY=1), fresh")
    row(f"start to READY=1 s, {r['backlog_queued']:,} queued",
        f"{sd['backlog']['ready_s']} ({sd['backlog']['ready_s_max']})", "startup s (to READY=1), backlog")
    row("start to first tap answered s, fresh / backlog",
        f"{sd['fresh']['first_tap_s']} / {sd['backlog']['first_tap_s']}")
    fl = r["flush_detail"]
    row(f"drain {fl['entries']:,} entries: kiosk / bare requests loop",
        f"{_fmt(r['flush_ratio'])} ({fl['kiosk_per_s']:.0f} vs {fl['bare_per_s']:.0f} entries/s)",
        "flush ratio (kiosk / bare loop)")
    b = r["burst"]
    row(f"burst: {b['taps']} taps of 200 people in {b['window_s']:g} s"
        f"{' (compressed)' if b['compressed'] else ''}: all handled",
        f"{b['all_handled']} ({b['delivered']}/{b['clock_outs']} entries delivered)",
        "burst: every tap handled, every entry delivered")
    row("burst tap p50 / p99 / max ms", _lat(b), "burst tap p99 (ms)")
    floors_b = b["floors_ms"]
    row("burst floors p99: echo / commit ms", f"{floors_b['echo']['p99']:.1f} / {floors_b['commit']['p99']:.1f}")
    return "\n".join(lines)


def text(r: dict) -> str:
    """A plain summary for a terminal: the table, then what was missed."""
    missed = r["targets_missed"]
    return markdown(r) + "\n\n" + (f"targets missed: {', '.join(missed)}" if missed else "every target met") + "\n"


def update_readme(path, r: dict) -> None:
    """Replace what stands between :data:`START` and :data:`END` in ``path`` with :func:`markdown`."""
    from pathlib import Path

    text = Path(path).read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    Path(path).write_text(f"{head}{START}\n{markdown(r)}\n{END}{tail}")
