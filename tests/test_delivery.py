"""The sender against the emulator over real loopback HTTP, with real SQLite stores.

Every fault the emulator can inject, outages, restarts and kills: each test
counts at the emulator that every queued entry arrived exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from kiosk import clock
from kiosk.model import Stamp
from kiosk.config import ApiSettings
from kiosk.sim.emulator import Emulator
from kiosk.rules import TapKind, TapOutcome
from kiosk.delivery.sender import (
    AUTH,
    BACKING_OFF,
    IDLE,
    IDLE_RESCAN,
    INFLIGHT,
    MAX_WAIT,
    OFFLINE,
    Sender,
    DeliveryError,
    _clamp_wait,
)
from kiosk.exc import StoreError
from kiosk.store import Store
from kiosk.delivery.client import SendOutcome
from kiosk.delivery import rounds
from kiosk.delivery.lanes import WIDTH
from kiosk.delivery.client import TimeTrackClient

from .kioskproc import closed_port, wait_for

KEY, SECRET = "kiosk-key", "Rotating-S3cret-never-log-me"
BASE = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
SETTLE = 0.2  # an ambiguous attempt has surely finished on the emulator after this long (no latency)


# ---------------------------------------------------------------- helpers


def api_for(url: str, **kw) -> ApiSettings:
    values = dict(base_url=url, key=KEY, secret=SECRET, connect_timeout=1.0, read_timeout=1.0,
                  backoff_initial=0.01, backoff_max=0.1, probe_interval=0.05)
    values.update(kw)
    return ApiSettings(**values)


def queue(store: Store, n: int, user: str = "anna", *, day: int = 0, synced: bool = True) -> list[int]:
    """n clock-in/clock-out pairs through the store's public tap path; returns the outbox ids."""
    ids = []
    base = BASE + timedelta(days=day)
    for i in range(n):
        start = base + timedelta(minutes=3 * i)
        end = start + timedelta(minutes=2, microseconds=1_234 * (i % 700))
        store.record(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", start, user))
        stamp = None if synced else Stamp(end, False, 1234.5, "boot-1")
        ids.append(store.record(TapOutcome(TapKind.CLOCK_OUT, "04A1B2C3", end, user, since=start), stamp))
    return ids


def key_of(entry) -> tuple[str, str, str]:
    return (entry.username, clock.to_api(entry.start), clock.to_api(entry.end))


def assert_exactly_once(rows: list[dict], store: Store, expected: set[tuple]) -> None:
    """Each expected entry is at the server exactly once and has left the outbox with its id."""
    counts = Counter((r["user"], r["from"], r["to"]) for r in rows)
    duplicates = {k: c for k, c in counts.items() if c > 1}
    assert not duplicates, f"duplicates at the server: {duplicates}"
    assert set(counts) == expected, f"missing {len(expected - set(counts))}, unexpected {len(set(counts) - expected)}"
    assert store.outbox_count() == 0
    ids = {(r["user"], r["from"], r["to"]): r["ID"] for r in rows}
    delivered = store.delivered()
    assert len(delivered) == len(expected)
    for d in delivered:
        assert d.server_id == ids[key_of(d)]


class MaxRng(random.Random):
    """Jitter that always picks the longest wait: makes "the long backoff" certain."""

    def uniform(self, a, b):
        return b


def persisted_state(store: Store) -> str | None:
    """The sender state as persisted for `kiosk status` (written after the in-memory one)."""
    return (store.status_value("sender") or {}).get("state")


@pytest.fixture
def probes(monkeypatch) -> list:
    """The results of the senders' connectivity probes (``TimeTrackClient.ping``, still over real HTTP)."""
    results = []
    real = TimeTrackClient.ping

    def ping(self):
        result = real(self)
        results.append(result)
        return result

    monkeypatch.setattr(TimeTrackClient, "ping", ping)
    return results


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "state" / "kiosk.sqlite") as s:
        yield s


@pytest.fixture
def emu():
    with Emulator(key=KEY, secret=SECRET) as emulator:
        yield emulator


@pytest.fixture
def senders():
    """Make senders; every one is stopped at the end of the test."""
    made: list[Sender] = []

    def make(store, api, **kw) -> Sender:
        kw.setdefault("settle", SETTLE)
        sender = Sender(store, api, **kw)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.stop(timeout=10)


def run_until_empty(sender: Sender, store: Store, timeout: float = 30.0) -> None:
    sender.start()
    sender.wake()
    assert wait_for(lambda: store.outbox_count() == 0, timeout), "the outbox to empty"


# ---------------------------------------------------------------- basics


def test_delivers_oldest_first_and_skips_unsynced_entries(store, emu, senders):
    ids = queue(store, 5)
    [held] = queue(store, 1, user="ben", synced=False)
    expected = {key_of(e) for e in store.outbox() if e.id != held}
    seen = []
    summary = senders(store, api_for(emu.url)).flush(progress=lambda e, r: seen.append((e.id, r.outcome)))
    assert seen == [(i, SendOutcome.DELIVERED) for i in ids]
    assert summary == {"delivered": 5, "rejected": 0, "failed": 0, "remaining": 1, "held": 1, "waiting": 0,
                       "state": IDLE, "error": None}
    assert [r["ID"] for r in emu.entries()] == [1, 2, 3, 4, 5]
    queue_order = [key_of(e) for e in sorted(store.delivered(), key=lambda e: e.id)]
    arrival = [(r["user"], r["from"], r["to"]) for r in emu.entries()]
    assert sorted(queue_order) == sorted(arrival)
    # Oldest first, two at a time (kiosk.delivery.lanes): no entry arrives more than one place early.
    assert all(abs(arrival.index(k) - i) < WIDTH for i, k in enumerate(queue_order))
    [left] = store.outbox()
    assert left.id == held and left.attempts == 0 and left.held
    assert {(r["user"], r["from"], r["to"]) for r in emu.entries()} == expected


def test_wake_delivers_at_once(store, emu, senders):
    sender = senders(store, api_for(emu.url))
    sender.start()
    assert wait_for(lambda: sender.status["state"] == IDLE), "idle"
    assert wait_for(lambda: sender.asleep), "asleep, for IDLE_RESCAN (30 s) unless woken"
    queue(store, 1)
    sender.wake()
    assert wait_for(lambda: len(emu.entries()) == 1, 5), "delivery after wake(), long before the rescan"
    assert wait_for(lambda: store.outbox_count() == 0, 5), "the mark"


def test_delivery_gives_way_while_a_tap_is_handled(store, emu, senders):
    """The daemon's "no tap in progress" event: while it is clear, no request goes out; then all do."""
    queue(store, 4)
    idle = threading.Event()  # a tap in progress
    sender = senders(store, api_for(emu.url))
    sender.give_way_to(idle)
    sender.start()
    sender.wake()
    time.sleep(0.4)
    assert emu.entries() == [] and store.outbox_count() == 4, "a request went out during the tap"
    idle.set()  # the tap is done
    assert wait_for(lambda: store.outbox_count() == 0, 10), "the drain to go on after the tap"
    assert len(emu.entries()) == 4


def test_a_tap_that_never_ends_does_not_stop_delivery(store, emu, senders, monkeypatch):
    """Giving way is bounded (GIVE_WAY_MAX per step): a hung tap slows delivery, never stops it."""
    monkeypatch.setattr(rounds, "GIVE_WAY_MAX", 0.05)
    queue(store, 3)
    sender = senders(store, api_for(emu.url))
    sender.give_way_to(threading.Event())  # never set
    assert sender.flush()["delivered"] == 3
    assert len(emu.entries()) == 3


def test_flush_requires_a_configured_api(store):
    with pytest.raises(DeliveryError, match="not configured"):
        Sender(store, ApiSettings()).flush()


def test_unconfigured_thread_waits_without_failing(store, senders):
    sender = senders(store, ApiSettings())
    sender.start()
    assert wait_for(lambda: sender.status["state"] == "not configured")


def test_settle_time_is_api_settle_seconds_unless_the_constructor_overrides_it(store, emu):
    """An ambiguous attempt 15 s ago, read timeout 30 s: the lookup waits for api.settle_seconds
    only (not four read timeouts), and a ``settle=`` argument wins over the setting."""
    def ambiguous_entry() -> int:
        [entry_id] = queue(store, 1, day=len(store.delivered()))
        at = clock.utcnow() - timedelta(seconds=15)
        store.update_entry(entry_id, ambiguous=True, ambiguous_at=at)
        return entry_id

    api = api_for(emu.url, read_timeout=30.0, settle_seconds=20.0)
    ambiguous_entry()
    summary = Sender(store, api).flush()
    assert summary["waiting"] == 1 and summary["delivered"] == 0 and emu.stats()["requests"] == 0
    assert Sender(store, api, settle=10.0).flush()["delivered"] == 1
    ambiguous_entry()
    assert Sender(store, replace(api, settle_seconds=10.0)).flush()["delivered"] == 1
    assert emu.stats()["by_method"] == {"GET": 2, "POST": 2}  # each one looked up before its POST
    assert len(emu.entries()) == 2


# ---------------------------------------------------------------- the thread never dies


def test_store_errors_in_the_thread_are_logged_once_and_delivery_goes_on(store, emu, senders, caplog,
                                                                         monkeypatch):
    caplog.set_level(logging.INFO, logger="kiosk.delivery")
    queue(store, 3)
    real, failures = store.queued, []

    def queued(*args, **kw):
        if len(failures) < 3:  # three turns in a row fail
            failures.append(1)
            raise sqlite3.OperationalError("disk I/O error")
        return real(*args, **kw)

    monkeypatch.setattr(store, "queued", queued)
    run_until_empty(senders(store, api_for(emu.url)), store, timeout=10)
    assert len(failures) == 3 and len(emu.entries()) == 3
    errors = [r for r in caplog.records if r.name == "kiosk.delivery" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "disk I/O error" in errors[0].getMessage()  # once per streak
    assert errors[0].exc_info is not None  # with its traceback
    assert wait_for(lambda: any("working again after 3 failed turns" in r.getMessage() for r in caplog.records))
    assert "internal error: OperationalError" in store.status_value("last_error")["message"]


class _RefusingEvent(threading.Event):
    """An Event whose first wait fails the way the platform refuses an impossible timeout."""

    def __init__(self):
        super().__init__()
        self.refusals = 1

    def wait(self, timeout=None):
        if self.refusals:
            self.refusals -= 1
            raise OverflowError("timestamp out of range for platform time_t")
        return super().wait(timeout)


def test_an_error_while_sleeping_does_not_end_delivery(store, emu, senders):
    sender = senders(store, api_for(emu.url))
    sender._wake = _RefusingEvent()
    sender.start()
    assert wait_for(lambda: sender._wake.refusals == 0), "the failed sleep"
    queue(store, 2)
    sender.wake()
    assert wait_for(lambda: store.outbox_count() == 0, 10), "delivery after the failed sleep"
    assert len(emu.entries()) == 2 and sender.alive
    assert "OverflowError" in sender.status["last_error"]["message"]


def test_a_huge_retry_after_neither_kills_the_thread_nor_pauses_it_forever(store, emu, senders):
    queue(store, 2)
    # Beyond threading.TIMEOUT_MAX: Event.wait(1e11) raises OverflowError.
    emu.set_faults(rate_limit=1.0, retry_after=10**11, max_faults=1)
    api = api_for(emu.url)
    sender = senders(store, api)
    sender.start()
    assert wait_for(lambda: sender.status["state"] == BACKING_OFF), "backing off"
    ahead = clock.from_iso(sender.status["next_attempt"]) - clock.utcnow()
    assert timedelta(minutes=59) < ahead <= timedelta(hours=1)  # capped at RETRY_AFTER_MAX
    assert wait_for(lambda: sender.asleep) and sender.alive, "waiting out the pause, not dead"
    sender.update_api(api)  # e.g. SIGHUP: resume now
    assert wait_for(lambda: store.outbox_count() == 0, 10), "delivery after update_api"
    assert len(emu.entries()) == 2


@pytest.mark.parametrize("wait,expected", [
    (None, IDLE_RESCAN), (0.5, 0.5), (-3.0, 0.0), (1e11, MAX_WAIT), (float("inf"), MAX_WAIT),
    (float("nan"), MAX_WAIT),
])
def test_thread_waits_are_clamped(wait, expected):
    assert _clamp_wait(wait) == expected


# ---------------------------------------------------------------- every fault mode


def test_latency_below_the_read_timeout(store, emu, senders):
    queue(store, 10)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(latency=0.05)
    run_until_empty(senders(store, api_for(emu.url)), store)
    assert_exactly_once(emu.entries(), store, expected)
    assert emu.stats()["by_method"] == {"POST": 10}


def test_latency_beyond_the_read_timeout_is_ambiguous_then_looked_up(store, emu, senders):
    queue(store, 10)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(latency=0.5, max_faults=4)
    # The server stores each timed-out POST 0.3 s after the client gave up: the
    # lookup must wait for that (settle), or it would miss the entry and re-send it.
    run_until_empty(senders(store, api_for(emu.url, read_timeout=0.2), settle=1.0), store)
    assert_exactly_once(emu.entries(), store, expected)
    assert emu.stats()["by_method"]["GET"] >= 1  # lookups before re-sending


def test_server_errors_are_retried_without_duplicates(store, emu, senders):
    queue(store, 60)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(error_rate=0.4, seed=7)
    run_until_empty(senders(store, api_for(emu.url)), store)
    assert_exactly_once(emu.entries(), store, expected)
    stats = emu.stats()
    assert stats["faults"]["error_rate"] >= 10
    assert stats["creates"] == 60


def test_retry_after_is_a_minimum_wait_and_burns_no_attempt(store, emu, senders):
    queue(store, 3)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(rate_limit=1.0, retry_after=1, max_faults=1)
    sender = senders(store, api_for(emu.url))
    started = time.monotonic()
    run_until_empty(sender, store)
    assert time.monotonic() - started >= 1.0  # the 429 said: not before one second
    assert_exactly_once(emu.entries(), store, expected)
    assert emu.stats()["by_status"] == {"429": 1, "201": 3}
    assert all(d.attempts == 0 for d in store.delivered())
    assert "429" in store.status_value("last_error")["message"]


def test_401_pauses_everything_until_the_new_secret_is_deployed(store, emu, senders):
    """Secret rotation: the server has a new secret, the kiosk still the old one."""
    queue(store, 4)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_credentials(KEY, "the-new-secret")
    states = []
    api = api_for(emu.url, probe_interval=0.02)
    sender = senders(store, api, on_status=lambda s: states.append(s["state"]))
    sender.start()
    assert wait_for(lambda: sender.status["state"] == AUTH), "credentials rejected"
    # Several credential re-checks (every 6 probe intervals), each a GET.
    assert wait_for(lambda: emu.stats()["by_method"].get("GET", 0) >= 3), "credential re-checks"
    assert store.outbox_count() == 4 and emu.entries() == []
    assert all(e.attempts == 0 and not e.ambiguous for e in store.outbox())
    assert emu.stats()["by_method"]["POST"] == 1  # paused after the first refusal
    assert store.status_value("sender")["state"] == AUTH
    assert "401" in store.status_value("last_error")["message"]
    sender.update_api(replace(api, secret="the-new-secret"))
    assert wait_for(lambda: store.outbox_count() == 0, 10), "delivery with the new secret"
    assert_exactly_once(emu.entries(), store, expected)
    assert states.count(AUTH) == 1
    assert wait_for(lambda: sender.status["state"] == IDLE)


def test_401_resumes_by_itself_when_the_server_accepts_again(store, emu, senders):
    queue(store, 2)
    emu.set_faults(unauthorized=True)
    sender = senders(store, api_for(emu.url, probe_interval=0.02))
    sender.start()
    assert wait_for(lambda: sender.status["state"] == AUTH), "credentials rejected"
    emu.set_faults()  # fixed on the server side; no update_api
    assert wait_for(lambda: store.outbox_count() == 0, 10), "delivery after the re-check"
    assert len(emu.entries()) == 2


@pytest.mark.parametrize("fault", ["drop_after_store", "drop_before_store"])
def test_dropped_connections(store, emu, senders, fault):
    queue(store, 20)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(**{fault: 1.0, "max_faults": 6})
    run_until_empty(senders(store, api_for(emu.url)), store)
    assert_exactly_once(emu.entries(), store, expected)
    stats = emu.stats()
    assert stats["faults"][fault] == 6
    assert stats["creates"] == 20  # a dropped-after-store entry was found, not created again
    assert stats["by_method"]["GET"] >= 1  # dropped POSTs were looked up before a re-send


def test_slow_body_read_timeout_is_looked_up(store, emu, senders):
    queue(store, 5)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(slow_body=1.0, max_faults=2)
    run_until_empty(senders(store, api_for(emu.url, read_timeout=0.2)), store)
    assert_exactly_once(emu.entries(), store, expected)
    assert emu.stats()["creates"] == 5


def test_failed_lookup_never_posts(store, emu, senders):
    [entry_id] = queue(store, 1)
    store.update_entry(entry_id, ambiguous=True)
    emu.set_faults(error_rate=1.0, seed=1, max_faults=4)  # the lookups fail
    run_until_empty(senders(store, api_for(emu.url)), store)
    stats = emu.stats()
    assert stats["by_method"]["GET"] == 5 and stats["by_method"]["POST"] == 1
    assert len(emu.entries()) == 1


# ---------------------------------------------------------------- volume


def test_1000_entry_backlog_after_an_outage(store, senders, probes, caplog):
    """Emulator down, 1,000 entries queued, emulator back on the same port: delivered
    within seconds by the probe, not after the (here: 30 s) backoff; exactly once."""
    caplog.set_level(logging.INFO, logger="kiosk.delivery")
    emu = Emulator(key=KEY, secret=SECRET).start()
    url = emu.url
    emu.stop()
    try:
        queue(store, 1000)
        expected = {key_of(e) for e in store.outbox()}
        api = api_for(url, backoff_initial=30.0, backoff_max=30.0)
        sender = senders(store, api, rng=MaxRng())
        sender.start()
        # The persisted status (what `kiosk status` reads) is written a moment after
        # the in-memory state changes: wait for that one.
        assert wait_for(lambda: persisted_state(store) == OFFLINE), "offline, persisted"
        status = store.status_value("sender")
        assert status["state"] == OFFLINE and status["queued"] == 1000
        failed = len(probes)
        assert wait_for(lambda: len(probes) >= failed + 3), "several probes to fail"
        assert all(not r.ok for r in probes)
        emu.start()
        back = time.monotonic()
        assert wait_for(lambda: store.outbox_count() == 0, 25), "the backlog to drain"
        assert time.monotonic() - back < 25  # the 30 s backoff did not hold it back
        assert_exactly_once(emu.entries(), store, expected)
    finally:
        emu.stop()
    problems = [r for r in caplog.records if r.name == "kiosk.delivery" and r.levelno >= logging.WARNING]
    assert len(problems) == 1 and "offline" in problems[0].getMessage()  # one line, not one per probe


def test_1000_entries_with_faults_at_100_percent_then_cleared(store, emu, senders):
    queue(store, 1000)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(error_rate=1.0, seed=5)
    sender = senders(store, api_for(emu.url))
    sender.start()
    assert wait_for(lambda: emu.stats()["faults"].get("error_rate", 0) >= 20), "failures"
    assert sender.status["state"] in (BACKING_OFF, "sending")
    emu.set_faults()
    assert wait_for(lambda: store.outbox_count() == 0, 30), "the backlog to drain"
    assert_exactly_once(emu.entries(), store, expected)


def test_100_ambiguous_failures_zero_duplicates(store, emu, senders):
    queue(store, 300)
    expected = {key_of(e) for e in store.outbox()}
    emu.set_faults(drop_after_store=0.5, seed=11, max_faults=100)
    run_until_empty(senders(store, api_for(emu.url)), store)
    stats = emu.stats()
    assert stats["faults"]["drop_after_store"] == 100
    assert stats["creates"] == 300
    assert_exactly_once(emu.entries(), store, expected)


# ---------------------------------------------------------------- one bad entry


def test_rejected_entry_does_not_hold_back_the_next(store, senders):
    with Emulator(key=KEY, secret=SECRET, users=["anna"]) as emu:
        [ghost] = queue(store, 1, user="ghost")
        queue(store, 2, user="anna", day=1)
        summary = senders(store, api_for(emu.url)).flush()
        assert summary["delivered"] == 2 and summary["rejected"] == 1
        assert [r["user"] for r in emu.entries()] == ["anna", "anna"]
    [rejected] = store.rejected()
    assert rejected.id == ghost and rejected.status == 400
    assert "Unknown user" in rejected.reason and "ghost" in rejected.reason
    assert store.outbox_count() == 0


def test_an_entry_that_ends_before_it_starts_is_rejected_locally(store, emu, senders):
    bad, good = queue(store, 2)
    entry = store.outbox_entry(bad)
    store.update_entry(bad, end=entry.start)
    assert senders(store, api_for(emu.url)).flush()["rejected"] == 1
    [rejected] = store.rejected()
    assert rejected.id == bad and rejected.status is None
    assert len(emu.entries()) == 1 and emu.stats()["by_method"] == {"POST": 1}


class _PoisonHandler(BaseHTTPRequestHandler):
    """A stand-in API whose server fails every POST for one user (503), and stores the rest."""

    protocol_version = "HTTP/1.1"
    created: list = []
    posts: Counter = Counter()

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posts[body["username"]] += 1
        if body["username"] == "poison":
            return self._answer(503, {"errors": [{"title": "Service unavailable", "status": 503,
                                                  "code": 503, "detail": "poisoned"}]})
        self.created.append(body)
        return self._answer(201, {"ID": len(self.created), "user": body["username"]})

    def do_GET(self):
        return self._answer(200, [])


def test_one_entry_failing_repeatedly_does_not_block_the_others(store, senders):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PoisonHandler)
    _PoisonHandler.created, _PoisonHandler.posts = [], Counter()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        [poison] = queue(store, 1, user="poison")
        queue(store, 3, user="anna", day=1)
        sender = senders(store, api_for(f"http://127.0.0.1:{server.server_port}/api/v2/ext", backoff_max=0.2))
        sender.start()
        assert wait_for(lambda: len(_PoisonHandler.created) == 3, 10), "the other entries"
        sender.wake()
        queue(store, 2, user="ben", day=2)  # later entries still flow
        sender.wake()
        assert wait_for(lambda: len(_PoisonHandler.created) == 5, 10), "later entries"
        assert wait_for(lambda: getattr(store.outbox_entry(poison), "attempts", 0) >= 3, 10), "retries of the poison"
    finally:
        server.shutdown()
        server.server_close()
    [left] = store.outbox()
    assert left.id == poison and "503" in left.last_error and left.next_attempt
    assert _PoisonHandler.posts["anna"] == 3 and _PoisonHandler.posts["ben"] == 2


def test_wrong_base_url_rejects_nothing(store, emu, senders):
    queue(store, 3)
    sender = senders(store, api_for(emu.url + "/wrong"))
    sender.start()
    assert wait_for(lambda: sender.status["state"] == BACKING_OFF), "backing off"
    assert store.rejected() == [] and store.outbox_count() == 3
    assert "api.base_url" in sender.status["last_error"]["message"]


# ---------------------------------------------------------------- kills and restarts


def _spawn_emulator(port: int, data: Path) -> subprocess.Popen:
    """`kiosk emulator` as a real process, keeping its entries in ``data`` across kills."""
    env = {**os.environ, "KIOSK_EMULATOR_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "emulator", "--port", str(port), "--key", KEY,
                             "--data", str(data)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = f"http://127.0.0.1:{port}/_emulator/stats"

    def up():
        try:
            return requests.get(admin, headers=_auth(), timeout=1).ok
        except requests.ConnectionError:
            return proc.poll() is not None  # died: stop waiting
    assert wait_for(up, 20), "the emulator process"
    assert proc.poll() is None
    return proc


def _auth() -> dict:
    return {"X-TimeTrack-Api-Key": KEY, "X-TimeTrack-Api-Secret": SECRET}


def _admin(port: int, what: str):
    return requests.get(f"http://127.0.0.1:{port}/_emulator/{what}", headers=_auth(), timeout=5).json()


def test_emulator_killed_and_restarted_mid_flush(store, senders, tmp_path):
    port, data = closed_port(), tmp_path / "emulator.json"
    queue(store, 150)
    expected = {key_of(e) for e in store.outbox()}
    proc = _spawn_emulator(port, data)
    try:
        sender = senders(store, api_for(f"http://127.0.0.1:{port}/api/v2/ext"))
        sender.start()
        assert wait_for(lambda: _admin(port, "stats")["creates"] >= 40, 20), "a part of the backlog"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_for(lambda: sender.status["state"] == OFFLINE, 10), "offline"
        assert store.outbox_count() > 0
        proc = _spawn_emulator(port, data)
        assert wait_for(lambda: store.outbox_count() == 0, 30), "the rest of the backlog"
        rows = [r for r in _admin(port, "entries") if not r["deleted"]]
    finally:
        proc.kill()
        proc.wait(10)
    assert_exactly_once(rows, store, expected)


def test_sender_killed_mid_flush_sends_nothing_twice(store, tmp_path):
    """The sender process dies with POSTs in flight; the next sender looks them up."""
    store_path = store.path
    queue(store, 200)
    expected = {key_of(e) for e in store.outbox()}
    with Emulator(key=KEY, secret=SECRET) as emu:
        emu.set_faults(latency=0.01)  # each POST is in flight for a while
        code = ("import os, sys; from kiosk.store import Store; from kiosk.delivery.sender import Sender; "
                "from kiosk.config import ApiSettings; "
                "Sender(Store(sys.argv[1]), ApiSettings(base_url=sys.argv[2], key=sys.argv[3], "
                "secret=os.environ['TEST_API_SECRET'], read_timeout=5.0)).flush()")
        proc = subprocess.Popen([sys.executable, "-c", code, str(store_path), emu.url, KEY], cwd=ROOT,
                                env={**os.environ, "TEST_API_SECRET": SECRET})
        try:
            assert wait_for(lambda: emu.stats()["creates"] >= 60 or proc.poll() is not None, 30), "deliveries"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(10)
        assert store.outbox_count() > 0
        emu.set_faults()
        summary = Sender(store, api_for(emu.url), settle=SETTLE).flush()
        assert summary["waiting"] >= 1  # the in-flight ones wait for the settle time
        time.sleep(SETTLE)
        assert Sender(store, api_for(emu.url), settle=SETTLE).flush()["remaining"] == 0
        assert emu.stats()["by_method"]["GET"] >= 1  # the in-flight entries were looked up
        assert_exactly_once(emu.entries(), store, expected)
        assert store.status_value(INFLIGHT)["ids"] == []


def test_two_senders_on_one_store_never_send_twice(tmp_path, emu):
    """The daemon's thread and a `kiosk queue flush` in another process share the outbox."""
    path = tmp_path / "state" / "kiosk.sqlite"
    with Store(path) as a, Store(path) as b:
        queue(a, 200)
        expected = {key_of(e) for e in a.outbox()}
        emu.set_faults(latency=0.002)
        one, two = Sender(a, api_for(emu.url), settle=SETTLE), Sender(b, api_for(emu.url), settle=SETTLE)
        one.start()
        try:
            summary = two.flush(lock_timeout=30)
            assert wait_for(lambda: a.outbox_count() == 0, 20), "the outbox to empty"
        finally:
            one.stop(timeout=10)
        assert_exactly_once(emu.entries(), a, expected)


# ---------------------------------------------------------------- status and secrets


def test_status_is_persisted_on_changes_only(store, senders, probes):
    queue(store, 2)
    url = f"http://127.0.0.1:{closed_port()}/api/v2/ext"
    calls = []
    sender = senders(store, api_for(url, backoff_initial=30.0, backoff_max=30.0), rng=MaxRng(),
                     on_status=lambda s: calls.append(s))
    sender.start()
    # on_status is called last, after the status is persisted.
    assert wait_for(lambda: calls and calls[-1]["state"] == OFFLINE), "offline"
    assert persisted_state(store) == OFFLINE
    assert wait_for(lambda: len(probes) >= 10), "ten failed probes"
    assert all(not r.ok for r in probes)
    assert [c["state"] for c in calls] in (["sending", OFFLINE], [OFFLINE])  # no change per probe
    status = store.status_value("sender")
    assert status["state"] == OFFLINE and status["queued"] == 2 and status["next_attempt"]
    assert "not sent" in store.status_value("last_error")["message"]
    assert sender.status["last_error"]["message"] == store.status_value("last_error")["message"]


def test_the_secret_reaches_no_log_and_no_file(store, emu, senders, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    queue(store, 6)
    emu.set_faults(drop_after_store=0.5, error_rate=0.2, seed=2, max_faults=6)
    sender = senders(store, api_for(emu.url))
    run_until_empty(sender, store)
    emu.set_faults(unauthorized=True)
    queue(store, 1, day=1)
    sender.wake()
    assert wait_for(lambda: sender.status["state"] == AUTH), "credentials rejected"
    sender.stop(timeout=10)
    # The sender, the client and urllib3 did log (at DEBUG): the check below looks at their lines.
    assert {"kiosk.delivery", "kiosk.delivery.client", "urllib3.connectionpool"} & {r.name for r in caplog.records}
    assert any(r.name == "kiosk.delivery" and "credentials rejected" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text
    assert SECRET not in repr(sender.status)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_store_error_while_saving_deliveries_never_sends_twice(store, emu, senders, monkeypatch):
    """The server confirmed, then saving that failed: the entries must not be POSTed again."""
    queue(store, 3)
    real = store.mark_delivered_many
    failures = []

    def flaky(marks, **kw):  # kw: the in-flight record saved in the same transaction
        if marks and not failures:
            failures.append(marks)
            raise StoreError("database is locked")
        return real(marks, **kw)

    monkeypatch.setattr(store, "mark_delivered_many", flaky)
    run_until_empty(senders(store, api_for(emu.url)), store)
    assert failures and emu.stats()["creates"] == 3 and len(emu.entries()) == 3
    assert len(store.delivered()) == 3
