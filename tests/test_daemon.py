"""`kiosk run` end to end as a real process: stdin reader, console feedback, real SQLite,
the TimeTrack emulator over loopback HTTP, signals and systemd notifications."""

import signal
import socket
import time

import pytest

from kiosk.sim.emulator import Emulator
from kiosk.store import Store

from .kioskproc import Daemon, clean_env, closed_port, kiosk, kiosk_json, wait_for, write_config

ANNA, BEN = "04A1B2C3", "04D5E6F7A8B9C0"


@pytest.fixture
def offline(tmp_path):
    """A kiosk whose API is unreachable (connection refused), with two badges."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "kiosk.toml", state, f"http://127.0.0.1:{closed_port()}/api/v2/ext")
    kiosk(config, "badge", "add", ANNA, "anna")
    kiosk(config, "badge", "add", "04:d5:e6:f7:a8:b9:c0", "ben")
    return config


def test_offline_api_queues_complete_entries_and_open_clock_in_survives_kill9(offline):
    d = Daemon(offline)
    d.tap(ANNA)
    assert d.line().startswith("IN  anna ")
    d.tap(ANNA)
    assert d.line().startswith("OUT anna ")
    d.tap(BEN)
    assert d.line().startswith("IN  ben ")
    d.kill()

    [entry] = kiosk_json(offline, "queue", "list")
    assert entry["username"] == "anna" and entry["from"] < entry["to"]
    assert {"attempts", "last_error", "id"} <= set(entry)
    status = kiosk_json(offline, "status")
    assert [o["username"] for o in status["open"]] == ["ben"]  # survived kill -9
    assert status["outbox"] == 1 and status["oldest_queued_at"]

    d = Daemon(offline)  # after the restart ben's next tap clocks him out
    d.tap(BEN)
    assert d.line().startswith("OUT ben ")
    assert d.close_input() == 0
    assert len(kiosk_json(offline, "queue", "list")) == 2
    assert kiosk_json(offline, "status")["sender"]["state"] == "stopped"  # not a stale "offline"


def test_feedback_lines_for_every_outcome(tmp_path):
    state = tmp_path / "state"
    config = write_config(tmp_path / "kiosk.toml", state, f"http://127.0.0.1:{closed_port()}/api/v2/ext",
                          debounce=30, min_session=3600)
    kiosk(config, "badge", "add", ANNA, "anna")
    kiosk(config, "badge", "add", BEN, "ben", "--disabled")
    d = Daemon(config)
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    d.tap(ANNA)
    assert d.line() == f"REPEAT {ANNA} (ignored)"
    d.tap("0xDEADBEEF")
    assert d.line() == "UNKNOWN DEADBEEF"
    d.tap(BEN)
    assert d.line() == f"DISABLED {BEN} ben"
    d.tap("not-a-badge")
    assert d.line().startswith("INVALID 'not-a-badge'")
    assert d.close_input() == 0
    with Store(state / "kiosk.sqlite", create=False) as store:
        assert [a.kind for a in store.audit(limit=5)] == ["invalid", "disabled", "unknown", "repeat", "clock_in"]


def test_too_soon(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state",
                          f"http://127.0.0.1:{closed_port()}/api/v2/ext", min_session=3600)
    kiosk(config, "badge", "add", ANNA, "anna")
    d = Daemon(config)
    d.tap(ANNA)
    d.line()
    d.tap(ANNA)
    assert d.line() == "TOO SOON anna"
    assert d.close_input() == 0
    assert len(kiosk_json(config, "status")["open"]) == 1


def test_entries_reach_timetrack(tmp_path):
    with Emulator(key="k", secret="s-very-secret") as emu:
        config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", emu.url, key="k",
                              secret="s-very-secret")
        kiosk(config, "badge", "add", ANNA, "anna")
        d = Daemon(config, log_level="INFO")
        d.tap(ANNA)
        d.line()
        d.tap(ANNA)
        d.line()
        deadline = time.monotonic() + 15
        while not emu.entries() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.stop() == 0
        [entry] = emu.entries()
        assert entry["user"] == "anna" and "test-kiosk" in entry["notes"]
        assert kiosk_json(config, "queue", "list") == []
        status = kiosk_json(config, "status")
        assert status["outbox"] == 0 and status["last_delivery"]["server_id"] == entry["ID"]
        assert "s-very-secret" not in d.stderr_so_far()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(offline, sig):
    d = Daemon(offline)
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    assert d.stop(sig) == 0
    assert [o["username"] for o in kiosk_json(offline, "status")["open"]] == ["anna"]


def test_systemd_ready_watchdog_and_stopping(offline, tmp_path):
    import os
    import subprocess

    from .kioskproc import KIOSK

    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(10)
        env = clean_env() | {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "200000"}
        proc = subprocess.Popen([*KIOSK, "--config", str(offline), "run"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        env["WATCHDOG_PID"] = str(proc.pid)
        messages = []
        try:
            while not any("WATCHDOG=1" in m for m in messages):
                messages.append(sock.recv(4096).decode())
            assert "READY=1" in messages[0] or any("READY=1" in m for m in messages)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        while not any("STOPPING=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
    os.unlink(sock_path)


def test_status_and_queue_list_human_output(offline):
    d = Daemon(offline)
    d.tap(ANNA)
    d.line()
    d.tap(ANNA)
    d.line()
    d.close_input()
    out = kiosk(offline, "status").stdout
    assert "queued:         1" in out and "open clock-ins: 0" in out
    listing = kiosk(offline, "queue", "list").stdout
    assert "anna" in listing and "attempts" in listing


def test_missing_store_reads_as_an_empty_kiosk_and_changes_fail_clearly(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "nothing-here", "http://127.0.0.1:1/api")
    result = kiosk(config, "status")
    assert "none yet at" in result.stdout and "not running (never seen)" in result.stdout
    assert "no badges (no store yet)" in kiosk(config, "badge", "list").stdout
    change = kiosk(config, "badge", "disable", "04A1B2C3", check=False)
    assert change.returncode == 1 and "does not exist" in change.stderr and "Traceback" not in change.stderr
    assert not (tmp_path / "nothing-here").exists()  # nothing created a store on the way


def read_until(daemon, prefix, timeout=20.0):
    """Read feedback lines (STATUS lines included) until one starts with ``prefix``."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = daemon.line(timeout=max(0.1, deadline - time.monotonic()), skip_status=False)
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no {prefix!r} line; saw {seen}")


def test_rotated_secret_file_pauses_then_resumes_delivery(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("old-secret\n")
    secret_file.chmod(0o600)
    with Emulator(key="k", secret="new-secret") as emu:
        config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", emu.url, key="k", secret_file=secret_file)
        kiosk(config, "badge", "add", ANNA, "anna")
        d = Daemon(config, log_level="INFO")
        d.tap(ANNA)
        d.tap(ANNA)
        seen = read_until(d, "STATUS fault")
        assert any(line.startswith("OUT anna") for line in seen) or d.line().startswith("OUT anna")
        assert "credentials rejected" in seen[-1]
        assert kiosk_json(config, "status")["sender"]["state"] == "credentials rejected"
        assert len(kiosk_json(config, "queue", "list")) == 1  # nothing dropped
        secret_file.write_text("new-secret\n")  # the admin deploys the rotated secret
        later = time.time() + 5
        import os
        os.utime(secret_file, (later, later))
        assert wait_for(lambda: len(emu.entries()) == 1)
        read_until(d, "STATUS ok")
        assert d.stop() == 0
        logs = d.stderr_so_far()
        assert "old-secret" not in logs and "new-secret" not in logs
    assert kiosk_json(config, "queue", "list") == []


def test_sighup_reloads_the_api_settings(tmp_path):
    with Emulator(key="k", secret="right") as emu:
        config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", emu.url, key="k", secret="wrong")
        kiosk(config, "badge", "add", ANNA, "anna")
        d = Daemon(config, log_level="INFO")
        d.tap(ANNA)
        d.tap(ANNA)
        read_until(d, "STATUS fault")
        config.write_text(config.read_text().replace('secret = "wrong"', 'secret = "right"'))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("configuration reloaded")
        assert wait_for(lambda: len(emu.entries()) == 1)
        assert d.stop() == 0


def test_sighup_with_a_broken_config_keeps_running(offline):
    d = Daemon(offline, log_level="INFO")
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    offline.write_text(offline.read_text() + "\n[bogus]\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reload refused")
    assert "bogus: unknown section" in d.stderr_so_far()
    d.tap(BEN)
    assert d.line().startswith("IN  ben")  # still taking taps
    assert d.stop() == 0
