"""The benchmark's own parts: percentiles, the floors as real processes, the report's keys and verdicts."""

from __future__ import annotations

import json
import sys

from bench import report, stats
from bench.procs import LineProcess, base_env, cpu_seconds, rss_mb

ISSUE_KEYS = {"tap_latency_ms", "floors_ms", "tap_vs_commit_floor", "idle_cpu_percent",
              "idle_cpu_percent_stock_library_10hz", "rss_mb", "rss_mb_backlog", "startup_s", "startup_s_backlog",
              "flush_ratio", "burst", "display_broken_vs_none_p99", "targets", "targets_missed"}


def test_percentiles_are_nearest_rank_values_that_happened():
    values = [0.001 * i for i in range(1, 1001)]
    assert stats.percentile(values, 99) == values[989]
    assert stats.percentile(values, 50) == values[499]
    summary = stats.summary_ms(values)
    assert summary == {"p50": 500.0, "p99": 990.0, "max": 1000.0, "n": 1000}  # seconds in, milliseconds out


def test_floor_processes_answer_each_line(tmp_path):
    echo = LineProcess([sys.executable, "-m", "bench.floors", "echo"], env=base_env(), stderr=tmp_path / "e.log")
    commit = LineProcess([sys.executable, "-m", "bench.floors", "commit", str(tmp_path / "f.sqlite")],
                         env=base_env(), stderr=tmp_path / "c.log")
    try:
        for n in range(3):
            seconds, line = echo.tap(f"04A1B2{n:02X}")
            assert seconds > 0 and line == f"04A1B2{n:02X}"
            seconds, line = commit.tap(f"04A1B2{n:02X}")
            assert seconds > 0 and line == f"IN  04A1B2{n:02X}"
        assert rss_mb(commit.pid)["peak"] > 1 and cpu_seconds(commit.pid) >= 0
    finally:
        echo.stop()
        commit.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "f.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM kiosk WHERE key LIKE 'audit:%'").fetchone()[0] == 3


def synthetic(p99_up: float = 10.0) -> dict:
    lat = {"p50": 2.0, "p99": p99_up, "max": 30.0, "n": 300}
    ok = {"p50": 2.0, "p99": 10.0, "max": 30.0, "n": 300}
    floor = {"p50": 1.0, "p99": 5.0, "max": 9.0, "n": 300}
    return {
        "tap": {"tap_latency_ms": {"up": lat, "down": ok, "slow": ok, "backlog": ok, "display_broken": ok,
                                   "backlog_draining": ok, "fresh_draining": ok},
                "floors_ms": {"echo": floor, "commit": floor}, "floors_draining_ms": {"echo": floor, "commit": floor},
                "unexpected": {}, "drain": {}, "rss": {"up": {"peak": 33.0}, "backlog": {"peak": 34.0}}},
        "idle": {"daemon": 0.5, "stock_library_10hz": 5.0, "seconds": 10.0},
        "startup": {s: {"ready_s": 0.5, "ready_s_max": 0.6, "first_tap_s": 0.5, "first_tap_s_max": 0.6}
                    for s in ("fresh", "backlog")},
        "flush": {"ratio": 0.95, "entries": 2000, "kiosk_per_s": 500.0, "bare_per_s": 520.0, "pairs": []},
        "burst": {**ok, "window_s": 30.0, "compressed": True, "taps": 260, "all_handled": True, "delivered": 100,
                  "clock_outs": 100, "floors_ms": {"echo": floor, "commit": floor}},
    }


def test_the_report_has_every_key_of_the_issue_and_judges_each_target():
    machine = {"cpu": "test", "cores": 2, "memory_gb": 1.0, "python": "3", "kernel": "6",
               "loadavg_start": [0.1], "loadavg_end": [0.2]}
    good = report.assemble(synthetic(), quick=True, backlog_n=20_000, machine=machine)
    assert ISSUE_KEYS <= set(good)
    assert set(good["tap_latency_ms"]) >= {"up", "down", "slow", "backlog"}
    assert good["targets_missed"] == []
    json.dumps(good, allow_nan=False)
    bad = report.assemble(synthetic(p99_up=25.0), quick=True, backlog_n=20_000, machine=machine)
    assert "tap p99 up (ms)" in bad["targets_missed"]
    table = report.markdown(bad)
    assert "**missed**" in table and "20,000" in table


def test_the_readme_table_is_replaced_between_the_markers(tmp_path):
    machine = {"cpu": "test", "cores": 2, "memory_gb": 1.0, "python": "3", "kernel": "6",
               "loadavg_start": [0.1], "loadavg_end": [0.2]}
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\nafter\n")
    report.update_readme(readme, report.assemble(synthetic(), quick=False, backlog_n=100_000, machine=machine))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert "| tap, API up" in text
