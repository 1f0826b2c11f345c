"""Signals against a real `kiosk run`: bursts of SIGHUP reload once, any storm leaves the daemon
answering taps and stopping cleanly (the handlers only record; the main loop acts)."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from kiosk.signals import SignalBox

from .kioskproc import Daemon, closed_port, kiosk, wait_for, write_config

ANNA = "04A1B2C3"


@pytest.fixture
def config(tmp_path):
    path = write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api")
    kiosk(path, "badge", "add", ANNA, "anna")
    return path


def storm(pid: int, *signals: int, times: int = 1) -> None:
    for _ in range(times):
        for sig in signals:
            os.kill(pid, sig)


def reloads(d: Daemon) -> int:
    return d.stderr_so_far().count("configuration reloaded")


def test_a_burst_of_sighups_reloads_once_and_taps_go_on(config):
    d = Daemon(config, log_level="INFO")
    d.wait_log("starting")
    storm(d.proc.pid, signal.SIGHUP, times=25)
    d.wait_log("configuration reloaded")
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    time.sleep(0.3)  # any late reload of the same burst would have been logged by now
    assert reloads(d) == 1
    storm(d.proc.pid, signal.SIGHUP, times=3)  # a second burst: a second reload
    assert wait_for(lambda: reloads(d) == 2)
    d.tap(ANNA)
    assert d.line().startswith("OUT anna")
    assert d.stop() == 0
    assert "Traceback" not in d.stderr_so_far() and "RecursionError" not in d.stderr_so_far()


def test_a_long_uneven_storm_of_sighups_never_wedges_the_main_loop(config):
    """Signals arriving while the main loop wakes from its wait (the old handlers set an Event
    there and deadlocked on its lock; a burst nested handlers until RecursionError)."""
    d = Daemon(config, log_level="INFO")
    d.wait_log("starting")
    rng = random.Random(7)
    deadline = time.monotonic() + 2.0
    sent = 0
    while time.monotonic() < deadline:
        os.kill(d.proc.pid, signal.SIGHUP)
        sent += 1
        time.sleep(rng.choice((0, 0, 0.0005, 0.002, 0.01, 0.03)))
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    assert 1 <= reloads(d) < sent
    os.kill(d.proc.pid, signal.SIGTERM)
    assert d.proc.wait(15) == 0
    d.close_input()
    assert "Traceback" not in d.stderr_so_far()


@pytest.mark.parametrize("last", [signal.SIGTERM, signal.SIGINT])
def test_a_mixed_storm_stops_the_daemon_cleanly(config, last):
    d = Daemon(config, log_level="INFO")
    d.wait_log("starting")
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    storm(d.proc.pid, signal.SIGHUP, signal.SIGHUP, signal.SIGHUP, times=20)
    storm(d.proc.pid, last, signal.SIGHUP, last)
    assert d.proc.wait(15) == 0  # the signals alone stopped it
    d.close_input()
    log = d.stderr_so_far()
    assert "kiosk stopped" in log and "Traceback" not in log


def test_signalbox_collects_a_burst_and_kicks_without_signals():
    box = SignalBox()
    assert box.install()
    try:
        assert box.wait(0) == set()
        for _ in range(50):
            os.kill(os.getpid(), signal.SIGHUP)
        assert box.wait(1.0) == {signal.SIGHUP}
        assert box.wait(0) == set()  # the burst came out as one set
        box.kick()
        started = time.monotonic()
        assert box.wait(5.0) == set() and time.monotonic() - started < 1.0  # a kick wakes, with no signal
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        assert box.wait(1.0) == {signal.SIGHUP, signal.SIGTERM}
    finally:
        box.close()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGHUP))
