"""Tap and delivery cost independent of the backlog: no store call on either path reads more than a page."""

from __future__ import annotations

import io
import time

import pytest

from kiosk import config
from kiosk.app import build
from kiosk.delivery.lanes import WIDTH
from kiosk.feedback.console import ConsoleFeedback
from kiosk.readers.stdin import StdinReader
from kiosk.sim.backlog import fill
from kiosk.sim.emulator import Emulator
from kiosk.store import PAGE, Store
from kiosk.store.db import Database

from .kioskproc import closed_port, wait_for

QUEUED = 3_000  # many pages' worth; the point is the shape of each read, not the size


class ReadLog:
    """Every paged read and full walk the store makes, with the rows it returned."""

    def __init__(self, monkeypatch):
        self.pages: list[tuple[str, int]] = []
        self.walks: list[str] = []
        page, walk = Database._page, Database._walk

        def logged_page(db, prefix, **kw):
            rows = page(db, prefix, **kw)
            self.pages.append((prefix, len(rows)))
            return rows

        def logged_walk(db, prefix, **kw):
            self.walks.append(prefix)
            return walk(db, prefix, **kw)

        monkeypatch.setattr(Database, "_page", logged_page)
        monkeypatch.setattr(Database, "_walk", logged_walk)

    def reset(self):
        self.pages.clear()
        self.walks.clear()


def settings_for(tmp_path, base_url):
    return config.from_dict({
        "kiosk": {"name": "backlog", "state_dir": str(tmp_path / "state")},
        "api": {"base_url": base_url, "key": "k", "secret": "s", "backoff_initial": 0.01, "backoff_max": 0.05,
                "probe_interval": 0.05, "settle_seconds": 0.1},
        "reader": {"type": "stdin"}, "feedback": {"type": "console"},
        "rules": {"debounce_seconds": 0, "min_session_seconds": 0}, "clock": {"sync_file": ""},
    })


@pytest.fixture
def backlog(tmp_path):
    def make(base_url):
        settings = settings_for(tmp_path, base_url)
        with Store(settings.store_path) as store:
            store.add_badge("0A0B0C0D", "dora")
            fill(store, QUEUED, users=["anna", "ben"])
        return settings
    return make


def test_taps_read_no_more_than_a_page_with_a_large_queue(backlog, monkeypatch):
    settings = backlog(f"http://127.0.0.1:{closed_port()}/api")
    log = ReadLog(monkeypatch)
    daemon = build(settings, reader=StdinReader(io.StringIO("")), feedback=ConsoleFeedback(io.StringIO()))
    try:
        for _ in range(2):
            assert daemon.handle("0A0B0C0D").kind in ("clock_in", "clock_out")
        assert log.walks == [] and all(rows <= PAGE for _, rows in log.pages), log.pages
    finally:
        daemon.sender.store.close()
        daemon.store.close()
        daemon.signals.close()


def test_delivery_reads_a_page_at_a_time_and_drains_the_backlog(backlog, monkeypatch):
    with Emulator(key="k", secret="s") as emu:
        settings = backlog(emu.url)
        log = ReadLog(monkeypatch)
        daemon = build(settings, reader=StdinReader(io.StringIO("")), feedback=ConsoleFeedback(io.StringIO()))
        try:
            daemon.sender.start()
            assert wait_for(lambda: len(emu.entries()) == QUEUED, timeout=120)
            assert wait_for(lambda: daemon.store.outbox_count() == 0)
        finally:
            daemon.sender.stop(timeout=10)
            daemon.sender.store.close()
            daemon.store.close()
            daemon.signals.close()
    reads = [rows for prefix, rows in log.pages if prefix in ("outbox", "held")]
    assert log.walks == [] and reads and max(reads) <= PAGE
    assert len(reads) >= QUEUED // PAGE  # it really paged through the queue


class SlowFeedback(ConsoleFeedback):
    """Console feedback that takes 0.3 s to show a tap, counting the entries that reach TimeTrack meanwhile."""

    def __init__(self, emu):
        super().__init__(io.StringIO())
        self.emu = emu
        self.during: list[int] = []

    def show(self, outcome):
        before = len(self.emu.entries())
        time.sleep(0.3)  # still inside the tap: the daemon's tap-in-progress event is clear
        self.during.append(len(self.emu.entries()) - before)
        super().show(outcome)


def test_a_draining_backlog_gives_way_to_each_tap(backlog):
    with Emulator(key="k", secret="s") as emu:
        settings = backlog(emu.url)
        feedback = SlowFeedback(emu)
        daemon = build(settings, reader=StdinReader(io.StringIO("")), feedback=feedback)
        try:
            daemon.sender.start()
            assert wait_for(lambda: len(emu.entries()) > 50, timeout=60), "the drain under way"
            for _ in range(3):
                assert daemon.handle("0A0B0C0D").kind in ("clock_in", "clock_out")
            # At most the requests already on their way when a tap began (one per lane) arrive during
            # it; a drain that went on would deliver dozens in 0.3 s.
            assert feedback.during and max(feedback.during) <= WIDTH, feedback.during
            assert wait_for(lambda: daemon.store.outbox_count() == 0, timeout=120), "the drain to finish"
        finally:
            daemon.sender.stop(timeout=10)
            daemon.sender.store.close()
            daemon.store.close()
            daemon.signals.close()
