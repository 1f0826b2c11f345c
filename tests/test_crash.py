"""Crash safety with real processes: SIGKILL at random moments, many times.

Every tap whose feedback line was printed must survive: feedback comes only
after the commit. A tap in flight when the kill lands may or may not have been
recorded, but never half: the open clock-ins and the outbox always agree.
"""

import random
import time

from kiosk import clock

from kiosk.store import Store

from .kioskproc import Daemon, closed_port, write_config

USERS = {f"04A1B2{i:02X}": f"user{i}" for i in range(4)}
KILLS = 60


def snapshot(path):
    with Store(path, create=False) as store:
        assert store.integrity_check() == "ok"
        open_users = {o.username for o in store.open_clock_ins()}
        entries = store.outbox()
    per_user = {u: sum(1 for e in entries if e.username == u) for u in USERS.values()}
    for e in entries:
        assert e.start < e.end, e
    return open_users, per_user


def test_random_sigkill_loses_no_acknowledged_tap(tmp_path):
    rng = random.Random(20261127)
    state = tmp_path / "state"
    config = write_config(tmp_path / "kiosk.toml", state, f"http://127.0.0.1:{closed_port()}/api/v2/ext")
    with Store(state / "kiosk.sqlite") as store:
        for uid, user in USERS.items():
            store.add_badge(uid, user)

    expected_open: set[str] = set()
    expected_entries = {u: 0 for u in USERS.values()}
    acked = inflight_resolved = 0

    def step(user):
        """One tap of ``user`` in the model: clock-in, or clock-out queuing an entry."""
        if user in expected_open:
            expected_open.discard(user)
            expected_entries[user] += 1
        else:
            expected_open.add(user)
    for _ in range(KILLS):
        daemon = Daemon(config)
        inflight = None
        for _ in range(rng.randint(0, 6)):
            uid = rng.choice(list(USERS))
            daemon.tap(uid)
            if rng.random() < 0.3:
                # kill with this tap in flight, after a random short delay
                inflight = USERS[uid]
                if rng.random() < 0.5:
                    time.sleep(rng.uniform(0, 0.05))
                break
            line = daemon.line()
            user = USERS[uid]
            assert line.startswith("OUT " if user in expected_open else "IN  "), line
            step(user)
            acked += 1
        daemon.kill()

        open_users, per_user = snapshot(state / "kiosk.sqlite")
        if inflight is not None and (open_users != expected_open or per_user != expected_entries):
            step(inflight)  # the in-flight tap was committed before the kill: exactly one whole step
            inflight_resolved += 1
        assert open_users == expected_open
        assert per_user == expected_entries
    assert acked > 30  # the loop did real work
    assert sum(expected_entries.values()) > 5


def test_random_sigkill_during_delivery_sends_every_entry_exactly_once(tmp_path):
    """Kills land while the daemon's sender is posting to a live (slowish) API."""
    from kiosk.sim.emulator import Emulator

    from .kioskproc import kiosk, kiosk_json, wait_for

    rng = random.Random(42)
    state = tmp_path / "state"
    with Emulator(key="test-key", secret="test-secret", faults={"latency": 0.02}) as emu:
        config = write_config(tmp_path / "kiosk.toml", state, emu.url, extra="")
        text = config.read_text().replace("probe_interval = 0.2", "probe_interval = 0.2\nsettle_seconds = 0.3")
        config.write_text(text)
        with Store(state / "kiosk.sqlite") as store:
            for uid, user in USERS.items():
                store.add_badge(uid, user)
        for _ in range(25):
            daemon = Daemon(config)
            for _ in range(rng.randint(2, 8)):
                daemon.tap(rng.choice(list(USERS)))
                daemon.line()
            time.sleep(rng.uniform(0, 0.15))  # let the sender get into a POST, or not
            daemon.kill()
        with Store(state / "kiosk.sqlite", create=False) as store:
            queued_or_sent = store.outbox_count() + len(store.delivered())
            assert store.integrity_check() == "ok"
        for entry in kiosk_json(config, "queue", "list"):
            assert (clock.truncate_ms(clock.from_iso(entry["to"]))
                    > clock.truncate_ms(clock.from_iso(entry["from"])))  # valid at the API's precision

        def drained():
            kiosk(config, "queue", "flush", check=False)
            return kiosk_json(config, "queue", "list") == []

        assert wait_for(drained, timeout=60, interval=0.3)
        received = emu.entries()
        keys = [(e["user"], e["from"], e["to"]) for e in received]
        assert len(keys) == len(set(keys)), "an entry reached TimeTrack twice"
        assert kiosk_json(config, "queue", "list", "--rejected") == []
        assert len(received) == queued_or_sent > 10
