"""The daemon's Prometheus textfile, from a real `kiosk run`: counts that match what happened,
counters that survive a restart and never go backwards."""

from __future__ import annotations

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from .kioskproc import Daemon, closed_port, kiosk, wait_for, write_config  # noqa: E402

ANNA, BEN = "04A1B2C3", "04D5E6F7"


def samples(path) -> dict[tuple, float]:
    if not path.exists():
        return {}
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(path, metric, **labels):
    return samples(path).get((metric, tuple(sorted(labels.items()))))


def test_metrics_file_follows_taps_and_survives_a_restart(tmp_path):
    prom = tmp_path / "metrics" / "kiosk.prom"
    prom.parent.mkdir()
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api",
                          extra=f'[metrics]\ntextfile = "{prom}"\n')
    kiosk(config, "badge", "add", ANNA, "anna")
    d = Daemon(config)
    for badge in (ANNA, ANNA, BEN, "not-a-badge"):
        d.tap(badge)
        d.line()
    assert wait_for(lambda: value(prom, "kiosk_taps_total", outcome="invalid") == 1)
    assert value(prom, "kiosk_taps_total", outcome="clock_in") == 1
    assert value(prom, "kiosk_taps_total", outcome="clock_out") == 1
    assert value(prom, "kiosk_taps_total", outcome="unknown") == 1
    assert wait_for(lambda: value(prom, "kiosk_queue_entries") == 1)  # the API is down: the entry waits
    assert value(prom, "kiosk_open_clock_ins") == 0 and value(prom, "kiosk_reader_up") == 1
    assert value(prom, "kiosk_clock_synced") == 1
    assert value(prom, "kiosk_info", name="test-kiosk", version=__import__("kiosk").__version__) == 1
    assert d.stop() == 0

    d = Daemon(config)  # counters come from the store: a restart does not reset them
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    assert wait_for(lambda: value(prom, "kiosk_taps_total", outcome="clock_in") == 2)
    assert value(prom, "kiosk_taps_total", outcome="clock_out") == 1
    assert value(prom, "kiosk_open_clock_ins") == 1
    assert d.stop() == 0
