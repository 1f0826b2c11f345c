"""The sender behind real networks: the emulator's proxy, portal, dribble, oversize and echo faults (#13).

Every test here failed on the sender before #13 (noted in each docstring):
duplicates behind a gateway, entries lost to a captive portal, a sender held
forever by a trickling server, bodies read whole, the secret echoed into logs
and the store, and a schedule that grew with the queue.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tracemalloc
from datetime import timedelta

import pytest

from kiosk import clock
from kiosk.delivery.answers import PORTAL_MESSAGE, Cause
from kiosk.delivery.schedule import LIMIT
from kiosk.delivery.sender import BACKING_OFF, NOT_TIMETRACK, Sender
from kiosk.model import OutboxEntry
from kiosk.sim.emulator import Emulator
from kiosk.store import Store
from kiosk.store.db import key

from .kioskproc import kiosk, wait_for, write_config
from .test_delivery import (  # noqa: F401 - fixtures
    KEY,
    SECRET,
    SETTLE,
    api_for,
    assert_exactly_once,
    emu,
    key_of,
    persisted_state,
    queue,
    run_until_empty,
    senders,
    store,
)


def rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


# ---------------------------------------------------------------- a gateway that stored, then failed


@pytest.mark.parametrize("status", [502, 503, 504, 0])
def test_gateway_error_after_forwarding_is_looked_up_never_resent_blindly(store, emu, senders, status):
    """Before #13 a 503 counted as "not processed": 20 duplicates in 100 entries behind such a proxy."""
    queue(store, 60)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(gateway_error=0.35, gateway_status=status, seed=4)
    run_until_empty(senders(store, api_for(emu.url)), store)
    assert_exactly_once(emu.entries(), store, expected)
    stats = emu.stats()
    assert stats["faults"]["gateway_error"] >= 10 and stats["creates"] == 60
    assert stats["by_method"]["GET"] >= stats["faults"]["gateway_error"]  # one lookup per stored-then-5xx


def test_a_gateway_that_never_forwarded_is_looked_up_too(store, emu, senders):
    queue(store, 30)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(gateway_down=0.3, gateway_status=503, seed=2)
    run_until_empty(senders(store, api_for(emu.url)), store)
    assert_exactly_once(emu.entries(), store, expected)


# ---------------------------------------------------------------- a captive portal or a web front end


@pytest.mark.parametrize("mode", ["page", "redirect", "511"])
def test_captive_portal_pauses_everything_then_resumes_by_itself(store, emu, senders, mode):
    """Before #13 the 200 login page counted as a delivery: 85 of 85 entries lost."""
    first, *_ = queue(store, 6)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(captive_portal=mode)
    states = []
    sender = senders(store, api_for(emu.url, probe_interval=0.05, backoff_max=0.2),
                     on_status=lambda s: states.append(s["state"]))
    sender.start()
    assert wait_for(lambda: persisted_state(store) == NOT_TIMETRACK), "paused: not TimeTrack"
    status = store.status_value("sender")
    assert PORTAL_MESSAGE in status["reason"] and PORTAL_MESSAGE in store.status_value("last_error")["message"]
    assert store.outbox_count() == 6 and store.delivered() == [] and emu.entries() == []
    assert store.outbox_entry(first).ambiguous  # it may have reached TimeTrack: looked up before a re-send
    assert all(not e.ambiguous for e in store.outbox() if e.id != first)  # the others were never sent
    probes = emu.stats()["requests"]
    assert wait_for(lambda: emu.stats()["requests"] >= probes + 3), "probes go on, with backoff"
    assert emu.stats()["by_method"].get("POST") == 1  # nothing else was posted into the portal
    emu.set_faults()  # signed in to the portal / back on the right network
    assert wait_for(lambda: store.outbox_count() == 0, 15), "delivery resumed by itself"
    assert_exactly_once(emu.entries(), store, expected)
    assert states.count(NOT_TIMETRACK) == 1


def test_flush_stops_on_a_portal_and_loses_nothing(store, emu):
    queue(store, 4)
    emu.set_faults(captive_portal="page")
    summary = Sender(store, api_for(emu.url), settle=SETTLE).flush()
    assert summary["delivered"] == 0 and summary["remaining"] == 4 and summary["state"] == NOT_TIMETRACK
    assert PORTAL_MESSAGE in summary["error"]
    emu.set_faults()
    time.sleep(SETTLE)  # the one posted into the portal is looked up once surely settled
    assert Sender(store, api_for(emu.url), settle=SETTLE).flush()["remaining"] == 0
    assert len(emu.entries()) == 4


def test_a_web_front_end_at_base_url_is_not_timetrack(store, senders):
    """base_url pointing at the web app: every answer a page (here the portal's login page, 200)."""
    with Emulator(key=KEY, secret=SECRET) as emu:
        queue(store, 2)
        sender = senders(store, api_for(emu.url.removesuffix("/api/v2/ext") + "/_portal/login?x="))
        sender.start()
        assert wait_for(lambda: persisted_state(store) == NOT_TIMETRACK)
        assert store.outbox_count() == 2 and store.rejected() == []


# ---------------------------------------------------------------- servers that trickle


@pytest.mark.parametrize("fault", ["dribble_head", "dribble_body"])
def test_a_trickling_server_never_holds_the_sender_past_the_deadline(store, emu, senders, fault):
    """Before #13 one byte every 0.2 s (each read within read_timeout) held the sender forever."""
    queue(store, 3)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(**{fault: 0.2})
    api = api_for(emu.url, read_timeout=0.5, request_deadline=1.5, backoff_max=0.2)
    sender = senders(store, api)
    sender.start()
    stuck: list[int] = []

    def watched() -> bool:
        assert sender.healthy()  # the watchdog keeps being fed: the deadline ends each request
        sender.watch()  # what the daemon's main loop does every tick
        seconds = (store.status_value("sender") or {}).get("stuck_seconds")
        if seconds:
            stuck.append(seconds)
        entries = store.outbox()
        return bool(stuck) and any(e.last_error and "request_deadline" in e.last_error for e in entries)

    assert wait_for(watched, 15), "a request cut at the deadline, shown as stuck meanwhile"
    assert max(stuck) >= 1
    assert all(e.ambiguous for e in store.outbox() if e.attempts)  # POSTed, maybe stored: looked up next
    emu.set_faults()
    assert wait_for(lambda: store.outbox_count() == 0, 20)
    assert_exactly_once(emu.entries(), store, expected)
    assert wait_for(lambda: (store.status_value("sender") or {}).get("stuck_seconds") is None)


def test_stop_abandons_a_trickling_request_at_once(store, emu, senders):
    """SIGTERM's path: stop() must not wait for the server. Before #13 it waited for the whole answer."""
    queue(store, 1)
    emu.set_faults(dribble_head=1.0)
    sender = senders(store, api_for(emu.url, read_timeout=5.0, request_deadline=60.0))
    sender.start()
    assert wait_for(lambda: emu.stats()["by_method"].get("POST") == 1), "the POST is being answered"
    started = time.monotonic()
    assert sender.stop(timeout=5)
    assert time.monotonic() - started < 2
    [entry] = store.outbox()
    assert entry.ambiguous and entry.attempts == 0  # maybe stored: looked up next time; no attempt burned


# ---------------------------------------------------------------- oversized answers


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_answer_is_never_held_whole(store, emu, senders, chunked):
    """Before #13 a 300 MB body took the daemon to 890 MB. Here 40 MB: at most the 1 MiB cap is read."""
    queue(store, 2)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(oversize=40_000_000, oversize_chunked=chunked)
    seen = []
    tracemalloc.start()
    try:
        Sender(store, api_for(emu.url), settle=SETTLE).flush(progress=lambda e, r: seen.append(r))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert seen and all(r.cause is Cause.TOO_LARGE for r in seen)
    emu.set_faults()
    run_until_empty(senders(store, api_for(emu.url)), store)
    assert_exactly_once(emu.entries(), store, expected)  # stored before the padded answer: found by lookup


# ---------------------------------------------------------------- the server echoes the secret


def test_a_server_echoing_the_headers_never_puts_the_secret_anywhere(tmp_path, caplog):
    """Before #13 the echoed X-TimeTrack-Api-Secret reached the log, the store, status and the rejected list."""
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    with Emulator(key=KEY, secret=SECRET, users=["anna"]) as emu:
        config = write_config(tmp_path / "kiosk.toml", state, emu.url, key=KEY, secret=SECRET)
        with Store(state / "kiosk.sqlite") as store:
            [ghost] = queue(store, 1, user="ghost")  # refused: its reason holds the echo
            queue(store, 8, day=1)
            emu.set_faults(echo_headers=True, error_rate=0.4, seed=8)
            sender = Sender(store, api_for(emu.url), settle=SETTLE)
            sender.start()
            try:
                assert wait_for(lambda: store.outbox_count() == 0, 20)
                emu.set_faults(echo_headers=True, unauthorized=True)
                queue(store, 1, day=2)
                sender.wake()
                assert wait_for(lambda: persisted_state(store) == "credentials rejected")
            finally:
                sender.stop(timeout=10)
            [rejected] = store.rejected()
            assert rejected.id == ghost and "Request headers" in rejected.reason and "********" in rejected.reason
            assert "Request headers" in store.status_value("last_error")["message"]
        outputs = [kiosk(config, *args).stdout for args in (("status",), ("status", "--json"), ("queue", "list"),
                                                              ("queue", "list", "--json"),
                                                              ("queue", "list", "--rejected"),
                                                              ("queue", "list", "--rejected", "--json"))]
    assert any("Request headers" in out for out in outputs)  # the echo is shown, masked
    assert any(r.name.startswith("kiosk.delivery") and "Request headers" in r.getMessage() for r in caplog.records)
    for out in [caplog.text, repr(sender.status), *outputs]:
        assert SECRET not in out
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes() or path.name == "kiosk.toml", path


# ---------------------------------------------------------------- memory with a huge queue


def fill_waiting(store: Store, n: int, wait: timedelta) -> None:
    """``n`` entries that all failed before a restart and wait ``wait`` (their next_attempt): each one
    has a wait, the case where a schedule that remembers every entry grows with the queue."""
    now = clock.utcnow()
    start = now - timedelta(days=30)
    for first in range(1, n + 1, 5000):
        with store.transaction() as db:
            records = {}
            for i in range(first, min(first + 5000, n + 1)):
                begin = start + timedelta(seconds=10 * i)
                entry = OutboxEntry(id=i, username="anna", uid="04A1B2C3", start=begin,
                                    end=begin + timedelta(seconds=5), queued_at=now, attempts=3,
                                    last_error="HTTP 503", next_attempt=now + wait)
                records[key("outbox", i)] = entry.to_record()
            db.update(records)
            db["meta:seq"] = min(first + 4999, n)


def waiting_round(tmp_path, emu, n: int, limit: int | None = None) -> tuple[Sender, int]:
    """Start a sender on ``n`` waiting entries; (the sender after its first round, RSS growth in KiB)."""
    store = Store(tmp_path / "kiosk.sqlite")
    fill_waiting(store, n, timedelta(hours=1))
    sender = Sender(store, api_for(emu.url, backoff_max=3600.0), settle=SETTLE)
    if limit is not None:
        sender.courier.schedule.limit = limit
    before = rss_kib()
    sender.start()
    try:
        assert wait_for(lambda: persisted_state(store) == BACKING_OFF, 120), "a round over the whole queue"
        grown = rss_kib() - before
        assert store.status_value("sender")["queued"] == n and emu.stats()["requests"] == 0
    finally:
        sender.stop(timeout=10)
        store.close()
    return sender, grown


def test_only_a_bounded_number_of_waiting_entries_is_remembered(tmp_path, emu):
    """Before #13 every waiting entry of the queue had a slot in memory."""
    sender, _ = waiting_round(tmp_path, emu, 20_000, limit=1_000)
    assert len(sender.courier.schedule) == 1_000


@pytest.mark.slow
def test_100000_queued_entries_do_not_grow_the_sender(tmp_path, emu):
    """100,000 entries waiting after a restart in a long outage: the RSS grew by 10 MiB before #13."""
    sender, grown = waiting_round(tmp_path, emu, 100_000)
    print(f"RSS grew by {grown} KiB over a round of 100,000 waiting entries")
    assert len(sender.courier.schedule) == LIMIT
    assert grown < 4 * 1024, f"RSS grew by {grown} KiB"


# ---------------------------------------------------------------- the watchdog


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_sender_thread_counts_in_the_daemons_health(tmp_path, emu):
    """A sender thread that died (a BaseException) stops the watchdog pings: systemd restarts the kiosk."""
    import io

    from kiosk import config
    from kiosk.app import build
    from kiosk.feedback.console import ConsoleFeedback
    from kiosk.readers.stdin import StdinReader

    settings = config.from_dict({
        "kiosk": {"state_dir": str(tmp_path / "state")},
        "api": {"base_url": emu.url, "key": KEY, "secret": SECRET},
        "reader": {"type": "stdin"}, "feedback": {"type": "console"}, "clock": {"source": "none"},
    })
    dying = threading.Event()

    class DyingSender(Sender):
        def _turn(self):
            if dying.is_set():
                raise SystemExit("the thread ends")
            return super()._turn()

    store = Store(settings.store_path)
    sender_store = Store(settings.store_path)
    daemon = build(settings, store=store, sender=DyingSender(sender_store, settings.api),
                   reader=StdinReader(io.StringIO("")), feedback=ConsoleFeedback(io.StringIO()))
    try:
        daemon.reader_thread.start()
        daemon.sender.start()
        assert wait_for(lambda: daemon.sender.alive and daemon.sender.asleep)
        # (the stdin reader has ended: only the sender's part of healthy() is looked at)
        assert daemon.sender.healthy()
        dying.set()
        daemon.sender.wake()
        assert wait_for(lambda: not daemon.sender.alive)
        assert not daemon.sender.healthy() and not daemon.healthy()
    finally:
        daemon.sender.stop(timeout=5)
        sender_store.close()
        store.close()
        daemon.signals.close()
