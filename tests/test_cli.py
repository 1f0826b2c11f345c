"""The `kiosk` command as a sysadmin uses it: real processes, real store, clear errors."""

import json
import re
import signal
import subprocess
import time

import pytest
import requests

from kiosk.store import Store

from .kioskproc import KIOSK, clean_env, closed_port, kiosk, kiosk_json, write_config

ANNA = "04A1B2C3"


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api/v2/ext")


def queue_entries(config, tmp_path, n, user="anna"):
    """n complete entries in the outbox, made through the real decision path."""
    from datetime import UTC, datetime, timedelta

    from kiosk.rules import TapKind, TapOutcome

    with Store(tmp_path / "state" / "kiosk.sqlite") as store:
        ids = []
        t = datetime(2026, 3, 2, 8, tzinfo=UTC)
        for i in range(n):
            start = t + timedelta(days=i)
            store.record(TapOutcome(TapKind.CLOCK_IN, ANNA, start, user))
            ids.append(store.record(TapOutcome(TapKind.CLOCK_OUT, ANNA, start + timedelta(hours=8), user, since=start)))
        return ids


def test_badge_add_accepts_any_spelling_and_refuses_bad_input(config):
    assert "04A1B2C3 -> anna" in kiosk(config, "badge", "add", "04:a1:b2:c3", "anna").stdout
    assert "04D5E6F7 -> ben (disabled)" in kiosk(config, "badge", "add", "0x04d5e6f7", "ben", "--disabled").stdout
    bad = kiosk(config, "badge", "add", "zz", "carla", check=False)
    assert bad.returncode == 1 and "not hex or decimal" in bad.stderr
    dup = kiosk(config, "badge", "add", ANNA, "carla", check=False)
    assert dup.returncode == 1 and "already mapped to anna" in dup.stderr
    spaces = kiosk(config, "badge", "add", "0x0A0B0C0D", "anna ", check=False)
    assert spaces.returncode == 1 and "username 'anna ' has trailing spaces" in spaces.stderr
    hidden = kiosk(config, "badge", "add", "0x0A0B0C0D", "an\u200bna", check=False)
    assert hidden.returncode == 1 and "U+200B ZERO WIDTH SPACE" in hidden.stderr and "\u200b" not in hidden.stderr
    rows = kiosk_json(config, "badge", "list")
    assert [(r["uid"], r["username"], r["enabled"]) for r in rows] == [
        ("04A1B2C3", "anna", True), ("04D5E6F7", "ben", False)]
    assert "04A1B2C3" in kiosk(config, "badge", "list").stdout


def test_queue_retry_and_drop(config, tmp_path):
    kiosk(config, "badge", "add", ANNA, "anna")
    a, b, c = queue_entries(config, tmp_path, 3)
    with Store(tmp_path / "state" / "kiosk.sqlite") as store:
        store.reject(a, 400, "Unknown user")
        store.reject(b, 422, "Overlapping entry")
    rejected = kiosk_json(config, "queue", "list", "--rejected")
    assert [(e["id"], e["status"], e["reason"]) for e in rejected] == [(a, 400, "Unknown user"),
                                                                       (b, 422, "Overlapping entry")]
    assert "Unknown user" in kiosk(config, "queue", "list", "--rejected").stdout

    assert kiosk(config, "queue", "retry", str(a)).returncode == 0
    assert [e["id"] for e in kiosk_json(config, "queue", "list")] == [a, c]
    again = kiosk(config, "queue", "retry", str(a), check=False)
    assert again.returncode == 1 and "still queued" in again.stderr
    usage = kiosk(config, "queue", "retry", check=False)
    assert usage.returncode == 2
    assert "1 entry queued again" in kiosk(config, "queue", "retry", "--all-rejected").stdout
    assert kiosk_json(config, "queue", "list", "--rejected") == []

    # drop asks for confirmation; without a terminal it refuses unless --yes
    refused = kiosk(config, "queue", "drop", str(c), check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert len(kiosk_json(config, "queue", "list")) == 3
    assert "dropped entry" in kiosk(config, "queue", "drop", str(c), "--yes", "--reason", "test").stdout
    assert [e["id"] for e in kiosk_json(config, "queue", "list")] == [a, b]
    with Store(tmp_path / "state" / "kiosk.sqlite") as store:
        audit = store.audit(limit=1)[0]
    assert audit.kind == "drop" and audit.fields["copy"]["id"] == c and audit.fields["reason"] == "test"
    missing = kiosk(config, "queue", "drop", "999", "--yes", check=False)
    assert missing.returncode == 1 and "no queued or rejected entry 999" in missing.stderr


def test_emulator_command_serves_and_stops(tmp_path):
    env = clean_env() | {"KIOSK_EMULATOR_SECRET": "cli-secret"}
    proc = subprocess.Popen([*KIOSK, "emulator", "--port", "0", "--key", "k", "--users", "anna"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        url = re.search(r"(http://\S+/api/v2/ext)", first).group(1)
        assert "cli-secret" not in first
        headers = {"X-TimeTrack-Api-Key": "k", "X-TimeTrack-Api-Secret": "cli-secret"}
        body = {"username": "anna", "from": "2026-03-02T08:00:00.000Z", "to": "2026-03-02T16:00:00.000Z"}
        assert requests.post(f"{url}/attendances", json=body, headers=headers, timeout=5).status_code in (200, 201)
        bad = requests.post(f"{url}/attendances", json=body | {"username": "zed"}, headers=headers, timeout=5)
        assert 400 <= bad.status_code < 500
        assert "created #1 anna" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_emulator_command_needs_a_secret_and_valid_faults():
    env = clean_env()
    env.pop("KIOSK_EMULATOR_SECRET", None)
    no_secret = subprocess.run([*KIOSK, "emulator", "--port", "0"], capture_output=True, text=True, env=env,
                               timeout=30)
    assert no_secret.returncode == 2 and "secret" in no_secret.stderr
    env["KIOSK_EMULATOR_SECRET"] = "x"
    bad = subprocess.run([*KIOSK, "emulator", "--port", "0", "--fault", "error_rate=2"], capture_output=True,
                         text=True, env=env, timeout=30)
    assert bad.returncode == 2 and "error_rate" in bad.stderr


def test_demo_runs_end_to_end_on_piped_input():
    proc = subprocess.Popen([*KIOSK, "demo", "--min-session", "0", "--debounce", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    for badge in ("04A1B2C3", "04D5E6F7A8B9C0", "04A1B2C3"):
        time.sleep(0.005)  # a person's pace: sessions longer than the API's millisecond
        proc.stdin.write(badge + "\n")
        proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "IN  anna" in out and "IN  ben" in out and "OUT anna" in out
    assert "TimeTrack received entry #1: anna" in out
    assert "1 entry delivered to the emulator." in out


def test_status_json_is_valid_for_scripts(config):
    kiosk(config, "badge", "add", ANNA, "anna")
    data = json.loads(kiosk(config, "status", "--json").stdout)
    assert {"open", "outbox", "rejected", "flagged", "last_delivery", "last_error"} <= set(data)


def test_queue_flush_delivers_and_summarises(tmp_path):
    from kiosk.sim.emulator import Emulator

    with Emulator(key="test-key", secret="test-secret", users=["anna"]) as emu:
        config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", emu.url)
        kiosk(config, "badge", "add", ANNA, "anna")
        queue_entries(config, tmp_path, 3)
        queue_entries(config, tmp_path, 1, user="zed")  # unknown at the server: rejected, the rest go on
        result = kiosk(config, "queue", "flush")
        assert "delivered 3, rejected 1, failed 0, still queued 0" in result.stdout
        assert len(emu.entries()) == 3
        [rejected] = kiosk_json(config, "queue", "list", "--rejected")
        assert rejected["username"] == "zed" and 400 <= rejected["status"] < 500
        assert kiosk_json(config, "queue", "flush")["delivered"] == 0  # nothing left, nothing sent twice
        assert len(emu.entries()) == 3


def test_queue_flush_unreachable_api_fails_and_keeps_everything(config, tmp_path):
    kiosk(config, "badge", "add", ANNA, "anna")
    queue_entries(config, tmp_path, 2)
    result = kiosk(config, "queue", "flush", check=False)
    assert result.returncode == 1 and "still queued 2" in result.stdout and "stopped" in result.stderr
    assert len(kiosk_json(config, "queue", "list")) == 2
