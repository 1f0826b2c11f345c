"""Torture: SIGKILL at random moments during taps and deliveries, with the API misbehaving in between.

A real ``kiosk run`` is killed again and again (25 times here, 200 with
``--torture-long``): while a tap is in flight, while the sender is inside a
POST, or while idle. Between kills the emulator (a process of its own) gets a
new random fault: latency, 5xx, 429, dropped connections before and after the
entry is stored, a proxy that stores and then answers 502, 503 or 504, a captive portal's
200 page, redirect or 511 page, 401, dribbled answers. After every kill the store must pass
``PRAGMA integrity_check`` and hold exactly the model's state: the open
clock-ins, and per person the entries made (queued, delivered or rejected),
an in-flight tap counting as one whole step or none. At the end, with the
faults off, everything is delivered: the emulator holds exactly one entry per
clock-out the model made, none twice.
"""

from __future__ import annotations

import random
import time

import pytest

from bench.procs import EmulatorProcess
from kiosk.store import Store

from .kioskproc import Daemon, kiosk, kiosk_json, wait_for, write_config
from .torture_support import scale

pytestmark = pytest.mark.torture

USERS = {f"04C0FE{i:02X}": f"worker{i}" for i in range(5)}
KILLS = scale(25, 200)
FAULTS = [
    {},
    {"latency": 0.15},
    {"error_rate": 0.4},
    {"rate_limit": 0.4, "retry_after": 1},
    {"drop_before_store": 0.4},
    {"drop_after_store": 0.4},
    {"gateway_error": 0.4},  # 502, 503 or 504 at random, after the entry was stored
    {"gateway_down": 0.4},
    {"captive_portal": "page"},
    {"captive_portal": "redirect"},
    {"captive_portal": "511"},
    {"unauthorized": True},
    {"dribble_body": 0.01},
    {"latency": 0.05, "drop_after_store": 0.3, "error_rate": 0.2},
]


class Model:
    """What the store must hold: who is clocked in, and how many entries each person made."""

    def __init__(self):
        self.open: set[str] = set()
        self.entries = {u: 0 for u in USERS.values()}

    def step(self, user: str) -> str:
        """Apply one tap of ``user``; the answer's first word."""
        if user in self.open:
            self.open.discard(user)
            self.entries[user] += 1
            return "OUT"
        self.open.add(user)
        return "IN"

    def matches(self, snapshot) -> bool:
        return snapshot == (self.open, self.entries)


def snapshot(path) -> tuple[set[str], dict[str, int]]:
    """(open users, entries per user: queued + held + delivered + rejected), after an integrity check."""
    with Store(path, create=False) as store:
        assert store.integrity_check() == "ok"
        open_users = {o.username for o in store.open_clock_ins()}
        made = [e.username for e in store.outbox()] + [e.username for e in store.held(limit=10_000)]
        made += [d.username for d in store.delivered()] + [r.username for r in store.rejected()]
    return open_users, {u: made.count(u) for u in USERS.values()}


def test_sigkill_storm_during_taps_and_deliveries_loses_nothing_and_sends_nothing_twice(tmp_path):
    rng = random.Random(20261130)
    state = tmp_path / "state"
    with EmulatorProcess(tmp_path, name="emulator") as emu:
        config = write_config(tmp_path / "kiosk.toml", state, emu.url, key="bench-key", secret="bench-secret")
        text = config.read_text().replace("probe_interval = 0.2", "probe_interval = 0.2\nsettle_seconds = 0.3")
        config.write_text(text)
        with Store(state / "kiosk.sqlite") as store:
            for uid, user in USERS.items():
                store.add_badge(uid, user)
        model = Model()
        acked = inflight_committed = 0
        history = []  # (cycle, faults) and each cycle's log, for the failure message
        logs = tmp_path / "daemon-logs.txt"
        for cycle in range(KILLS):
            faults = rng.choice(FAULTS)
            emu.set_faults(**faults, seed=rng.randrange(1 << 30))
            history.append((cycle, faults))
            daemon = Daemon(config, log_level="INFO")
            inflight = None
            for _ in range(rng.randint(0, 6)):
                uid = rng.choice(list(USERS))
                daemon.tap(uid)
                if rng.random() < 0.25:  # kill with this tap in flight, at once or a moment later
                    inflight = USERS[uid]
                    if rng.random() < 0.5:
                        time.sleep(rng.uniform(0, 0.03))
                    break
                line = daemon.line()
                expected = model.step(USERS[uid])
                assert line.split()[0] == expected, line
                acked += 1
            if inflight is None:
                time.sleep(rng.uniform(0, 0.3))  # the sender is in a POST, or between two, or idle
            daemon.kill()
            with open(logs, "a") as fh:
                fh.write(f"---- cycle {cycle} faults {faults}\n{daemon.stderr_so_far()}")
            got = snapshot(state / "kiosk.sqlite")
            if inflight is not None and not model.matches(got):
                model.step(inflight)  # the tap in flight was committed before the kill: one whole step
                inflight_committed += 1
            assert got == (model.open, model.entries), f"after {acked} acknowledged taps"
        emu.set_faults()
        made = sum(model.entries.values())
        assert acked > KILLS and made > KILLS // 5  # the storm did real work

        def drained() -> bool:
            kiosk(config, "queue", "flush", check=False, env=None)
            return kiosk_json(config, "queue", "list") == []

        assert wait_for(drained, timeout=120, interval=0.5)
        assert kiosk_json(config, "queue", "list", "--rejected") == []
        received = emu.entries()
    keys = [(e["user"], e["from"], e["to"]) for e in received]
    twice = [e for e in received if keys.count((e["user"], e["from"], e["to"])) > 1]
    assert not twice, f"entries reached TimeTrack twice: {twice}; daemon logs in {logs}"
    assert len(received) == made, f"{len(received)} entries at TimeTrack, {made} clock-outs made"
    per_user = {u: sum(1 for e in received if e["user"] == u) for u in USERS.values()}
    assert per_user == model.entries


def test_proxy_503_after_the_insert_does_not_send_the_entry_twice(tmp_path):
    """A proxy may answer 503 after forwarding a POST that was stored (found by the 200-kill storm)."""
    from datetime import timedelta

    from kiosk import clock
    from kiosk.config import ApiSettings
    from kiosk.delivery.sender import Sender
    from kiosk.rules import TapKind, TapOutcome

    with EmulatorProcess(tmp_path, name="emulator") as emu:
        emu.set_faults(gateway_error=1, gateway_status=503, max_faults=1)
        with Store(tmp_path / "kiosk.sqlite") as store:
            start = clock.utcnow() - timedelta(hours=1)
            store.record(TapOutcome(TapKind.CLOCK_IN, "04C0FE00", start, "worker0"))
            store.record(TapOutcome(TapKind.CLOCK_OUT, "04C0FE00", start + timedelta(minutes=30), "worker0",
                                    since=start))
            sender = Sender(store, ApiSettings(base_url=emu.url, key="bench-key", secret="bench-secret",
                                               backoff_initial=0.01, backoff_max=0.02), settle=0.1)
            for _ in range(20):
                sender.flush()
                if not store.outbox_count():
                    break
                time.sleep(0.05)
        assert emu.stats()["faults"].get("gateway_error") == 1
        assert len(emu.entries()) == 1, "the entry reached TimeTrack twice"


def test_captive_portal_200_page_is_not_taken_for_a_delivery(tmp_path):
    """A portal's '200 OK' HTML page is no delivery (found by the 200-kill storm: 5 of 146 entries lost)."""
    from datetime import timedelta

    from kiosk import clock
    from kiosk.config import ApiSettings
    from kiosk.delivery.sender import Sender
    from kiosk.rules import TapKind, TapOutcome

    with EmulatorProcess(tmp_path, name="emulator") as emu:
        emu.set_faults(captive_portal="page")
        with Store(tmp_path / "kiosk.sqlite") as store:
            start = clock.utcnow() - timedelta(hours=1)
            store.record(TapOutcome(TapKind.CLOCK_IN, "04C0FE00", start, "worker0"))
            store.record(TapOutcome(TapKind.CLOCK_OUT, "04C0FE00", start + timedelta(minutes=30), "worker0",
                                    since=start))
            Sender(store, ApiSettings(base_url=emu.url, key="bench-key", secret="bench-secret"), settle=0.1).flush()
            kept = store.outbox_count()
        assert emu.entries() == []
        assert kept == 1, "the entry left the queue although TimeTrack never got it"
