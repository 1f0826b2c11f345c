"""Delivery end to end behind a hostile network (#13): a real ``kiosk run`` and the emulator in its own process.

Every fault mode mixed, while taps go on: a gateway that stores and then
answers 502/503/504, one that never forwards, 5xx, 429, connections dropped
before and after storing, a captive portal (page, redirect, 511), dribbled
heads and bodies, oversized answers, the request headers echoed into every
error, and TimeTrack's clock an hour ahead of the kiosk's (whose own source
says "not synchronised"). The kiosk is stopped with SIGTERM while a request
trickles, and killed with SIGKILL mid-delivery. Then: every entry stored
exactly once, none lost (the one unknown user rejected, with the reason
kept), every stamp corrected by TimeTrack's time, and the secret in no log,
status, queue list, rejected list or file.

The bounded run is part of the normal suite; the full one (1,000 entries and
more phases) runs with ``-m slow`` and prints its figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from kiosk import clock as clk
from kiosk.sim.emulator import Emulator
from kiosk.store import Store

from .kioskproc import Daemon, closed_port, kiosk, kiosk_json, wait_for
from .kioskproc import write_config as write_kiosk_config

KEY, SECRET = "e2e-key", "E2e-S3cret-must-never-show-up"
ROOT = Path(__file__).resolve().parent.parent
OFFSET = 3600.0  # TimeTrack's clock is an hour ahead of the kiosk's
DEADLINE = 2.0  # api.request_deadline in these runs
USERS = [f"user{i:02d}" for i in range(16)]
GHOST = "ghost"  # not a TimeTrack user: its entries are rejected (with the echoed headers in the reason)

MIXED = dict(gateway_error=0.1, gateway_status=0, gateway_down=0.05, error_rate=0.05, drop_after_store=0.06,
             drop_before_store=0.04, rate_limit=0.02, retry_after=1)
PHASES = [
    MIXED,
    {"captive_portal": "page"},
    MIXED,
    {"dribble_body": 0.25},
    MIXED,
    {"oversize": 3_000_000},
    {"captive_portal": "redirect"},
    MIXED,
    {"dribble_head": 0.25},
    {"captive_portal": "511"},
    {"oversize": 3_000_000, "oversize_chunked": True},
]


def badge(i: int) -> str:
    return f"0A{i:06X}"  # a letter in it: no reading of it as a decimal reader number


# ---------------------------------------------------------------- the emulator in its own process


class EmulatorProcess:
    """``kiosk emulator`` as a process; faults and counts through its admin API."""

    def __init__(self, tmp_path: Path):
        self.port = closed_port()
        env = {**os.environ, "KIOSK_EMULATOR_SECRET": SECRET}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "emulator", "--port", str(self.port), "--key", KEY,
             "--data", str(tmp_path / "emulator.json"), "--users", ",".join(USERS)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/api/v2/ext"
        assert wait_for(self._up, 20) and self.proc.poll() is None, "the emulator process"

    def _admin(self, method: str, what: str, body=None):
        resp = requests.request(method, f"http://127.0.0.1:{self.port}/_emulator/{what}", json=body,
                                headers={"X-TimeTrack-Api-Key": KEY, "X-TimeTrack-Api-Secret": SECRET}, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def _up(self) -> bool:
        try:
            self.stats()
            return True
        except requests.ConnectionError:
            return self.proc.poll() is not None

    def faults(self, **faults) -> None:
        """Replace the faults; TimeTrack's clock (date_offset) and the echo stay on all the while."""
        self._admin("PUT", "faults", {"date_offset": OFFSET, "echo_headers": True, **faults})

    def stats(self) -> dict:
        return self._admin("GET", "stats")

    def entries(self) -> list[dict]:
        return [r for r in self._admin("GET", "entries") if not r["deleted"]]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


# ---------------------------------------------------------------- the run


def write_config(tmp_path: Path, url: str, *, deadline: float = DEADLINE, clock_source: str = "file") -> Path:
    """The e2e daemon: fast retries, a short request deadline, a clock never synchronised by file (so
    trust comes from TimeTrack's Date header)."""
    return write_kiosk_config(tmp_path / "kiosk.toml", tmp_path / "state", url, key=KEY, secret=SECRET, name="e2e",
                              api={"backoff_max": 1.0, "probe_interval": 0.1, "settle_seconds": 0.5,
                                   "read_timeout": 1, "request_deadline": deadline},
                              clock={"source": clock_source, "sync_file": tmp_path / "never-synchronised"})


@dataclass
class Run:
    tmp_path: Path
    emulator: EmulatorProcess
    config: Path
    daemon: Daemon | None = None
    logs: list[str] = field(default_factory=list)
    pairs: int = 0
    ghosts: int = 0
    stop_seconds: list[float] = field(default_factory=list)
    open_users: set[int] = field(default_factory=set)

    def start(self) -> None:
        self.daemon = Daemon(self.config, log_level="INFO")

    def tap(self, i: int) -> None:
        d = self.daemon
        d.tap(badge(i))
        line = d.line(30)
        user = GHOST if i == len(USERS) else USERS[i]
        assert line.split()[:2] in (["IN", user], ["OUT", user]), line
        if line.startswith("OUT"):
            self.open_users.discard(i)
            self.pairs += 1
            self.ghosts += user == GHOST
        else:
            self.open_users.add(i)

    def taps(self, n: int, first: int) -> None:
        """``n`` clock-in/clock-out pairs, users in turn (every 17th pair the ghost's)."""
        for k in range(n):
            i = len(USERS) if (first + k) % 17 == 16 else (first + k) % len(USERS)
            self.tap(i)
            self.tap(i)
            if k % 10 == 9:
                self.daemon.stderr_so_far()  # keep the log pipe drained

    def sigterm_while_trickling(self) -> None:
        """SIGTERM while a request trickles: the daemon must be gone well within the deadline."""
        before = self.emulator.stats()["faults"].get("dribble_head", 0)
        self.emulator.faults(dribble_head=0.5)
        self.taps(1, 0)  # something to send
        assert wait_for(lambda: self.emulator.stats()["faults"].get("dribble_head", 0) > before, 20)
        time.sleep(0.3)  # into the answer's head
        started = time.monotonic()
        code = self.daemon.stop(signal.SIGTERM)
        self.stop_seconds.append(time.monotonic() - started)
        self.logs.append(self.daemon.stderr_so_far())
        assert code == 0, self.logs[-1][-2000:]
        self.start()

    def sigkill(self) -> None:
        self.daemon.kill()
        self.logs.append(self.daemon.stderr_so_far())
        self.start()

    def finish(self) -> None:
        self.logs.append(self.daemon.stderr_so_far())
        assert self.daemon.close_input() == 0
        self.logs.append(self.daemon.stderr_so_far())


def run_mixed(tmp_path: Path, chunks: int, per_chunk: int, settle_phases: float) -> dict:
    emulator = EmulatorProcess(tmp_path)
    config = write_config(tmp_path, emulator.url)
    with Store(tmp_path / "state" / "kiosk.sqlite") as store:
        for i, user in enumerate([*USERS, GHOST]):
            store.add_badge(badge(i), user)
    run = Run(tmp_path, emulator, config)
    started = time.monotonic()
    try:
        emulator.faults(**MIXED)
        run.start()
        for chunk in range(chunks):
            emulator.faults(**PHASES[chunk % len(PHASES)])
            run.taps(per_chunk, chunk * per_chunk)
            if chunk == chunks // 3:
                run.sigterm_while_trickling()
            if chunk == 2 * chunks // 3:
                run.sigkill()
        for phase in PHASES:  # the faults go on a while after the last tap
            emulator.faults(**phase)
            time.sleep(settle_phases)
            run.daemon.stderr_so_far()
        emulator.faults()  # a healthy network again (TimeTrack's clock still an hour ahead)
        state = Path(tmp_path / "state" / "kiosk.sqlite")

        def drained() -> bool:
            run.daemon.stderr_so_far()
            with Store(state, create=False) as s:
                return s.outbox_count() == 0 and len(s.rejected()) == run.ghosts
        assert wait_for(drained, 120, interval=0.5), run.daemon.stderr_so_far()[-3000:]
        elapsed = time.monotonic() - started
        outputs = [kiosk(config, *args).stdout for args in (
            ("status",), ("status", "--json"), ("queue", "list"), ("queue", "list", "--json"),
            ("queue", "list", "--rejected"), ("queue", "list", "--rejected", "--json"))]
        status = kiosk_json(config, "status")
        run.finish()
        rows, stats = emulator.entries(), emulator.stats()
    finally:
        if run.daemon is not None and run.daemon.proc.poll() is None:
            run.daemon.kill()
        emulator.close()

    # ---- stored exactly once, none lost
    with Store(tmp_path / "state" / "kiosk.sqlite", create=False) as store:
        delivered, rejected = store.delivered(), store.rejected()
        flagged = [(f.was, f.reason) for f in store.flagged()]
        assert store.outbox_count() == 0 and store.held_count() == 0 and flagged == [], flagged
        open_now = [o.username for o in store.open_clock_ins()]
    counts = Counter((r["user"], r["from"], r["to"]) for r in rows)
    duplicates = sum(c - 1 for c in counts.values())
    by_key = {(r["user"], r["from"], r["to"]): r["ID"] for r in rows}
    keys = {(d.username, clk.to_api(d.start), clk.to_api(d.end)): d for d in delivered}
    assert duplicates == 0, [k for k, c in counts.items() if c > 1][:5]
    assert len(delivered) + len(rejected) == run.pairs, (len(delivered), len(rejected), run.pairs)
    assert len(rejected) == run.ghosts and all(r.username == GHOST for r in rejected)
    assert set(by_key) == set(keys) and len(rows) == len(delivered)
    assert all(by_key[k] == d.server_id for k, d in keys.items())
    assert open_now == [USERS[i] if i < len(USERS) else GHOST for i in sorted(run.open_users)]
    # ---- every stamp carries TimeTrack's time (the kiosk's clock was an hour behind)
    for d in delivered:
        assert abs((d.end - d.queued_at).total_seconds() - OFFSET) < 3, (d.end, d.queued_at)
        assert any("from TimeTrack's Date header" in note for note in d.notes_log), d.notes_log
    assert status["clock"]["source"] == "timetrack" and status["clock"]["trusted"]
    # ---- the secret nowhere, though every error echoed it
    assert all("Request headers" in r.reason and "********" in r.reason for r in rejected)
    for text in [*run.logs, *outputs]:
        assert SECRET not in text
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    # ---- SIGTERM while a request trickled: gone well within the deadline
    assert run.stop_seconds and max(run.stop_seconds) < DEADLINE
    return {"entries": run.pairs, "delivered": len(delivered), "rejected": len(rejected), "duplicates": duplicates,
            "lost": run.pairs - len(delivered) - len(rejected), "posts": stats["by_method"].get("POST", 0),
            "gets": stats["by_method"].get("GET", 0), "faults": stats["faults"],
            "sigterm_stop_seconds": round(max(run.stop_seconds), 2), "seconds": round(elapsed, 1)}


def test_all_faults_mixed_bounded(tmp_path):
    figures = run_mixed(tmp_path, chunks=6, per_chunk=20, settle_phases=0.4)
    print(json.dumps(figures, sort_keys=True))
    assert figures["entries"] >= 120 and figures["duplicates"] == 0 and figures["lost"] == 0


@pytest.mark.slow
def test_all_faults_mixed_full(tmp_path):
    figures = run_mixed(tmp_path, chunks=22, per_chunk=46, settle_phases=1.5)
    print(json.dumps(figures, sort_keys=True))
    assert figures["entries"] >= 1000 and figures["duplicates"] == 0 and figures["lost"] == 0


# ---------------------------------------------------------------- SIGTERM and "stuck", on their own


def test_sigterm_stops_the_daemon_within_the_deadline_whatever_the_server_does(tmp_path):
    """A server trickling its answer's head, a byte every half second (each read within read_timeout).
    Before #13 the sender held on; the daemon only left after giving up on the thread (10 s)."""
    with Emulator(key=KEY, secret=SECRET) as emu:
        cfg = write_config(tmp_path, emu.url, deadline=8, clock_source="none")
        kiosk(cfg, "badge", "add", badge(0), USERS[0])
        emu.set_faults(dribble_head=0.5)
        d = Daemon(cfg)
        try:
            d.tap(badge(0))
            d.tap(badge(0))
            assert d.line().startswith("IN") and d.line().startswith("OUT")
            assert wait_for(lambda: emu.stats()["by_method"].get("POST") == 1), "the POST is being answered"
            assert wait_for(lambda: "stuck in a request for" in kiosk(cfg, "status").stdout, 10)
            status = kiosk_json(cfg, "status")["sender"]
            assert status["state"] == "sending" and status["stuck_seconds"] >= 1
            started = time.monotonic()
            code = d.stop(signal.SIGTERM)
            stopped = time.monotonic() - started
        finally:
            if d.proc.poll() is None:
                d.kill()
    assert code == 0 and stopped < 8, f"stopped after {stopped:.1f}s"
    assert stopped < 3  # it does not even wait for the deadline: stop() abandons the request
    [entry] = kiosk_json(cfg, "queue", "list")
    assert entry["ambiguous"] is True  # the POST may have been stored: looked up before any re-send
