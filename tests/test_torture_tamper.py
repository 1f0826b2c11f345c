"""Torture: someone who can write the store file plants bad values, a pickle payload among them.

The store is JSON in a key/value table; a pickle payload in it must never be
unpickled (it would run code as the kiosk user), and no malformed value may
stop the daemon or make a command print a traceback. Each case plants one
bad value under a real key (a badge, an open clock-in, a queued or rejected
entry, the sender's status or in-flight record, an audit line, a counter)
next to a good badge. Then:

- nothing was executed (the payload would create a marker file);
- the daemon answers every tap, the tampered badge included (``ERROR`` or
  ``UNKNOWN`` is fine), and the good badge clocks in and out as usual;
- the good badge's entry reaches the emulator (one bad record must not
  block the others);
- ``kiosk status``, ``queue list`` and ``badge list`` end with their normal
  output or a clear message, never a traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3

import pytest

from bench.procs import EmulatorProcess
from kiosk.store import Store

from .kioskproc import Daemon, kiosk, wait_for, write_config

pytestmark = pytest.mark.torture

GOOD, VICTIM = "04600D01", "04BAD002"
COMMANDS = (["status", "--json"], ["queue", "list", "--json"], ["queue", "list", "--rejected", "--json"],
            ["badge", "list", "--json"])


class Payload:
    """Unpickling this creates the marker file: proof that something unpickled store data."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled(marker: str, protocol: int) -> bytes:
    return pickle.dumps(Payload(marker), protocol=protocol)


PICKLE = object()  # stands for a pickle payload (protocol 2, or the one given) in the cases below

CASES = [
    pytest.param("badge:" + VICTIM, PICKLE, id="badge-pickle"),
    pytest.param("badge:" + VICTIM, (PICKLE, 0), id="badge-pickle-protocol-0"),
    pytest.param("badge:" + VICTIM, "not json at all", id="badge-not-json"),
    pytest.param("badge:" + VICTIM, json.dumps({"username": 42, "enabled": "yes"}), id="badge-wrong-types"),
    pytest.param("badge:" + VICTIM, json.dumps(["a", "list"]), id="badge-list"),
    pytest.param("open:victim", PICKLE, id="open-pickle"),
    pytest.param("outbox:000000090001", PICKLE, id="outbox-pickle"),
    pytest.param("outbox:000000090001", json.dumps({"id": "x"}), id="outbox-wrong-shape"),
    pytest.param("rejected:000000090001", PICKLE, id="rejected-pickle"),
    pytest.param("status:sender", PICKLE, id="sender-status-pickle"),
    pytest.param("status:sender_inflight", PICKLE, id="inflight-pickle"),
    pytest.param("audit:000000090001", PICKLE, id="audit-pickle"),
    pytest.param("flagged:000000090001", PICKLE, id="flagged-pickle"),
    pytest.param("counter:taps:clock_in", PICKLE, id="counter-pickle"),
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with EmulatorProcess(tmp_path_factory.mktemp("emulator"), name="emulator") as emu:
        yield emu


def delivered_or_stuck(emulator, daemon) -> bool:
    """The good entry reached the emulator (True), or the sender reported an error (False, at once)."""
    def settled():
        return "good" in {e["user"] for e in emulator.entries()} or "sender error" in daemon.stderr_so_far()
    wait_for(settled, timeout=20)
    return "good" in {e["user"] for e in emulator.entries()}


@pytest.mark.parametrize("key,value", CASES)
def test_tampered_store_value_is_refused_without_running_anything(tmp_path, emulator, key, value):
    marker = tmp_path / "PWNED"
    if value is PICKLE or isinstance(value, tuple):
        value = pickled(str(marker), value[1] if isinstance(value, tuple) else 2)
    emulator.reset()
    state = tmp_path / "state"
    path = state / "kiosk.sqlite"
    config = write_config(tmp_path / "kiosk.toml", state, emulator.url, key="bench-key", secret="bench-secret")
    with Store(path) as store:
        store.add_badge(GOOD, "good")
        store.add_badge(VICTIM, "victim")
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO kiosk (key, value) VALUES (?, ?)", (key, value))

    problems = []  # containment failures: the bad record reached further than its own badge or entry
    daemon = Daemon(config)
    try:
        answers = []
        for uid in (GOOD, VICTIM, VICTIM, GOOD):
            daemon.tap(uid)
            answers.append(daemon.line())  # every tap is answered, whatever the store holds
            daemon.stderr_so_far()  # keep the log pipe drained
        for line in answers:
            assert line.split()[0] in ("IN", "OUT", "ERROR", "UNKNOWN", "DISABLED"), answers
        if not (answers[0].startswith("IN  good") and answers[3].startswith("OUT good")):
            problems.append(f"the good badge's taps: {answers}")
        elif not delivered_or_stuck(emulator, daemon):
            errors = [line for line in daemon.stderr_so_far().splitlines() if "sender error" in line]
            problems.append("the good entry was never delivered: " + (errors[0] if errors else "(nothing logged)"))
        for args in COMMANDS:
            done = kiosk(config, *args, check=False)
            assert done.returncode in (0, 1), (args, done.returncode, done.stderr)
            if "Traceback" in done.stderr + done.stdout:
                problems.append(f"kiosk {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
        assert daemon.proc.poll() is None, "the daemon died of a tampered store"
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        assert not marker.exists(), "a pickle payload in the store was unpickled: it ran a command"
    if problems:
        pytest.fail("; ".join(problems))
