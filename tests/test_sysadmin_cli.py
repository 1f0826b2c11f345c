"""The sysadmin's commands as real processes beside a running daemon (`kiosk run`, stdin reader,
console feedback): each change shows at the reader at once, bad input is refused and changes nothing."""

import json
import os
import pty
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from kiosk.store import Store

from .kioskproc import KIOSK, Daemon, clean_env, closed_port, kiosk, kiosk_json, wait_for, write_config

ANNA, BEN, NEW = "04A1B2C3", "04D5E6F7", "0A0B0C0D"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api/v2/ext")


@pytest.fixture
def daemon(config):
    kiosk(config, "badge", "add", ANNA, "anna")  # the store, before the daemon (as after `install.sh`)
    d = Daemon(config, log_level="INFO")
    assert wait_for(lambda: kiosk_json(config, "status")["daemon"]["running"], timeout=15)
    yield d
    if d.proc.poll() is None:
        d.stop()


def snapshot(config, tmp_path):
    """Everything a refused command must leave as it was (audit log aside, which the refusal may not touch)."""
    with Store(tmp_path / "state" / "kiosk.sqlite", create=False) as store:
        return {"badges": [b.to_record() for b in store.iter_badges()],
                "open": [o.to_record() for o in store.open_clock_ins()],
                "queue": [e.to_record() for e in store.iter_outbox()],
                "rejected": [e.to_record() for e in store.iter_rejected()],
                "flagged": [f.to_record() for f in store.iter_flagged()],
                "audit": store.audit_count()}


def until(daemon, prefix: str, timeout: float = 15.0) -> str:
    """Read feedback lines until one starts with ``prefix`` (ENROLLING lines come from the main loop,
    interleaved with taps as the daemon notices requests)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = daemon.line(timeout=max(0.1, deadline - time.monotonic()))
        if line.startswith(prefix):
            return line
        seen.append(line)
        assert line.startswith("ENROLLING"), (prefix, seen)
    raise AssertionError(f"no {prefix!r} line; saw {seen}")


def refused(config, *args, code=1, says=""):
    result = kiosk(config, *args, check=False)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    assert says in result.stderr, (says, result.stderr)
    assert "Traceback" not in result.stderr
    return result


# ---------------------------------------------------------------- badges


def test_badge_lifecycle_takes_effect_at_the_reader(config, daemon, tmp_path):
    out = kiosk(config, "badge", "add", BEN, "ben", "--label", "blue lanyard").stdout
    assert "04D5E6F7 -> ben (label 'blue lanyard')" in out
    daemon.tap(BEN)
    assert daemon.line().startswith("IN  ben")
    assert "disabled" in kiosk(config, "badge", "disable", BEN).stdout
    daemon.tap(BEN)
    assert daemon.line() == "DISABLED 04D5E6F7 ben"
    shown = kiosk_json(config, "badge", "show", BEN)
    assert (shown["label"], shown["enabled"], shown["open_clock_in"]["username"]) == ("blue lanyard", False, "ben")
    assert [t["kind"] for t in shown["last_taps"]][:2] == ["disabled", "badge_disable"]
    kiosk(config, "badge", "enable", BEN)
    kiosk(config, "badge", "update", BEN, "--username", "ben.berg")
    rows = kiosk_json(config, "badge", "list")
    assert [(r["uid"], r["username"], r["label"], r["enabled"]) for r in rows] == [
        (ANNA, "anna", "", True), (BEN, "ben.berg", "blue lanyard", True)]
    assert set(rows[0]) == {"uid", "username", "label", "enabled", "added_at"}
    assert rows[1]["added_at"] == shown["added_at"]  # disable, enable and update keep the added time
    daemon.tap(BEN)
    assert daemon.line().startswith("IN  ben.berg")  # ben's open clock-in stays his old username's
    assert "removed badge 04D5E6F7 -> ben.berg" in kiosk(config, "badge", "remove", BEN).stdout
    daemon.tap(BEN)
    assert daemon.line() == "UNKNOWN 04D5E6F7"
    replaced = kiosk(config, "badge", "add", ANNA, "carla", "--replace").stdout
    assert "04A1B2C3 -> carla (replaced: 04A1B2C3 -> anna)" in replaced


def test_bad_badge_input_is_refused_and_changes_nothing(config, daemon, tmp_path):
    kiosk(config, "badge", "add", BEN, "ben", "--label", "x")
    before = snapshot(config, tmp_path)
    refused(config, "badge", "add", "abbadaba", "04C0FFEE", says="looks like a badge id: were the arguments swapped?")
    refused(config, "badge", "add", BEN, "carla", says="already mapped to ben")
    refused(config, "badge", "add", NEW, "an\u200bna", says="U+200B ZERO WIDTH SPACE")
    refused(config, "badge", "add", NEW, "a" * 101, says="at most 100")
    refused(config, "badge", "add", NEW, "anna", "--label", "tab\there", says="control character")
    refused(config, "badge", "add", "zz", "anna", says="not hex or decimal")
    refused(config, "badge", "remove", NEW, says="no badge 0A0B0C0D")
    refused(config, "badge", "disable", NEW, says="no badge")
    refused(config, "badge", "update", BEN, code=2, says="give --username and/or --label")
    refused(config, "badge", "update", BEN, "--username", " ben", says="leading spaces")
    refused(config, "badge", "show", NEW, says="no badge")
    bad_json = kiosk(config, "badge", "show", NEW, "--json", check=False)
    assert bad_json.returncode == 1 and "no badge" in json.loads(bad_json.stdout)["error"]
    assert snapshot(config, tmp_path) == before
    # a username that is only hex in lower case is a name (the "abbadaba")
    assert "-> abbadaba" in kiosk(config, "badge", "add", "04C0FFEE", "abbadaba").stdout


def test_export_then_import_with_prune_makes_the_file_the_truth(config, daemon, tmp_path):
    kiosk(config, "badge", "add", BEN, "ben", "--disabled")
    exported = tmp_path / "badges.csv"
    kiosk(config, "badge", "export", str(exported))
    assert exported.read_text() == f"uid,username,label,enabled\n{ANNA},anna,,true\n{BEN},ben,,false\n"
    refused(config, "badge", "export", str(exported), says="exists")
    as_json = json.loads(kiosk(config, "badge", "export", "--format", "json").stdout)
    assert [r["uid"] for r in as_json] == [ANNA, BEN]
    # 0218893066: 0A0B0C0D as a USB reader types it (little-endian decimal)
    exported.write_text(f"uid,username,label,enabled\n{ANNA},anna,front desk,true\n0218893066,carla,,\n")
    plan = kiosk_json(config, "badge", "import", str(exported), "--dry-run", "--prune")
    assert plan == {"added": 1, "changed": 1, "unchanged": 0, "removed": 1, "dry_run": True}
    assert len(kiosk_json(config, "badge", "list")) == 2  # the dry run changed nothing
    text = kiosk(config, "badge", "import", str(exported), "--prune").stdout
    assert "1 added, 1 changed, 0 unchanged, 1 removed" in text
    assert [r["uid"] for r in kiosk_json(config, "badge", "list")] == [ANNA, NEW]
    daemon.tap(BEN)
    assert daemon.line() == "UNKNOWN 04D5E6F7"
    daemon.tap(NEW)
    assert daemon.line().startswith("IN  carla")
    assert kiosk_json(config, "badge", "import", str(exported), "--prune")["unchanged"] == 2  # idempotent


def test_import_refusals_list_every_line_and_change_nothing(config, daemon, tmp_path):
    kiosk(config, "badge", "add", BEN, "ben")
    before = snapshot(config, tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"uid,username,label\n{NEW},carla,\nzz,dave,\n0218893066,erin,\n{BEN},frank,\n"
                   "CAFEBABE,gi\u200bna,\n")  # line 4 names line 2's badge in its decimal spelling
    result = kiosk(config, "badge", "import", str(bad), "--json", check=False)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert [e["line"] for e in doc["errors"]] == [3, 4, 6] and "nothing was changed" in doc["error"]
    assert "already on line 2" in doc["errors"][1]["error"] and "U+200B" in doc["errors"][2]["error"]
    text = kiosk(config, "badge", "import", str(bad), check=False)
    assert "line 3:" in text.stderr and "line 6:" in text.stderr and text.returncode == 1
    conflict = tmp_path / "conflict.csv"
    conflict.write_text(f"uid,username\n{NEW},carla\n{BEN},frank\n")
    doc = json.loads(kiosk(config, "badge", "import", str(conflict), "--json", check=False).stdout)
    assert doc["errors"] == [{"line": 3, "error": "badge 04D5E6F7 is mapped to ben in the store, the file maps "
                                                  "it to frank: use --replace to change it"}]
    refused(config, "badge", "import", str(tmp_path / "missing.csv"), says="No such file")
    assert snapshot(config, tmp_path) == before
    assert kiosk_json(config, "badge", "import", str(conflict), "--replace")["changed"] == 1


def test_import_shows_a_progress_bar_on_a_terminal(config, tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("uid,username\n" + "".join(f"AB{i:06X},user{i}\n" for i in range(3000)))
    master, slave = pty.openpty()
    proc = subprocess.Popen([*KIOSK, "--config", str(config), "badge", "import", str(big)], stdout=subprocess.PIPE,
                            stderr=slave, env=clean_env(), text=True)
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0 and "3000 added" in out
    assert b"checking" in seen and b"100%" in seen and b"created a new store" in seen


# ---------------------------------------------------------------- enrolment by tap


def test_enroll_maps_the_next_unknown_tap_which_then_clocks_in(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api",
                          debounce=30)
    refused(config, "enroll", "anna", says="daemon is not running")
    kiosk(config, "badge", "add", ANNA, "anna")
    d = Daemon(config)
    try:
        assert wait_for(lambda: kiosk_json(config, "status")["daemon"]["running"], timeout=15)
        waiting = subprocess.Popen([*KIOSK, "--config", str(config), "enroll", "carla", "--label", "spare",
                                    "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=clean_env())
        assert d.line(skip_status=True) == "ENROLLING carla: tap the new badge"
        refused(config, "enroll", "dave", says="enrolment for carla")  # one request at a time
        d.tap(ANNA)  # a known badge is not taken
        assert d.line().startswith("IN  anna")
        d.tap(NEW)
        assert d.line() == "ENROLLED 0A0B0C0D carla"
        out, err = waiting.communicate(timeout=20)
        assert waiting.returncode == 0 and out.strip() == NEW, err
        assert d.line() == "ENROLLING ended"
        d.tap(NEW)  # within the 30 s debounce: still a clock-in, the enrolling tap does not count
        assert d.line().startswith("IN  carla")
        assert kiosk_json(config, "badge", "show", NEW)["label"] == "spare"
        timed_out = kiosk(config, "enroll", "dave", "--timeout", "1", check=False)
        assert timed_out.returncode == 1 and "nothing was enrolled" in timed_out.stderr
        d.tap(BEN)
        assert until(d, "UNKNOWN") == "UNKNOWN 04D5E6F7"  # no request was left behind
        kinds = [line["kind"] for line in kiosk_json(config, "log", "--limit", "0")]
        assert "enrolled" in kinds and "enrol_cancel" in kinds
        interrupted = subprocess.Popen([*KIOSK, "--config", str(config), "enroll", "erin", "--timeout", "30"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
        assert until(d, "ENROLLING erin") == "ENROLLING erin: tap the new badge"
        interrupted.send_signal(signal.SIGTERM)
        assert interrupted.wait(10) == 130 and "nothing was enrolled" in interrupted.stderr.read()
        d.tap("0B0C0D0E")
        assert until(d, "UNKNOWN") == "UNKNOWN 0B0C0D0E"  # SIGTERM withdrew the request
        refused(config, "enroll", "bad\u200bname", says="U+200B")
    finally:
        d.stop()


# ---------------------------------------------------------------- open clock-ins


def test_open_list_close_and_cancel(config, daemon, tmp_path):
    kiosk(config, "badge", "add", BEN, "ben")
    daemon.tap(ANNA)
    daemon.line()
    daemon.tap(BEN)
    daemon.line()
    listed = kiosk_json(config, "open", "list")
    assert [o["username"] for o in listed] == ["anna", "ben"]
    since = datetime.fromisoformat(listed[0]["since"])
    before = snapshot(config, tmp_path)
    refused(config, "open", "close", "anna", "--at", iso(now() + timedelta(hours=1)), says="in the future")
    refused(config, "open", "close", "anna", "--at", iso(since - timedelta(hours=1)), says="not after the start")
    refused(config, "open", "close", "anna", "--at", "2026-11-30T17:05:00", code=2, says="has no zone")
    refused(config, "open", "close", "anna", "--at", "tomorrow", code=2, says="not an ISO 8601 time")
    refused(config, "open", "close", "anna", code=2, says="Missing option '--at'")
    refused(config, "open", "close", "zed", "--at", iso(now()), says="zed has no open clock-in")
    refused(config, "open", "cancel", "ben", says="--yes")
    assert snapshot(config, tmp_path) == before
    time.sleep(1.1)
    end = now().replace(microsecond=0)
    local_end = end.astimezone().isoformat()  # local time with its offset
    entry = kiosk_json(config, "open", "close", "anna", "--at", local_end)
    assert datetime.fromisoformat(entry["to"]) == end and entry["username"] == "anna"
    [queued] = kiosk_json(config, "queue", "list")
    assert queued["id"] == entry["id"] and "clock-out entered by" in queued["notes_log"][0]
    assert "cancelled the clock-in of ben" in kiosk(config, "open", "cancel", "ben", "--yes").stdout
    assert kiosk_json(config, "open", "list") == []
    daemon.tap(ANNA)  # anna's next tap is a fresh clock-in
    assert daemon.line().startswith("IN  anna")


# ---------------------------------------------------------------- flagged


def test_flagged_list_resolve_and_discard(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api",
                          extra="")
    text = config.read_text().replace("[rules]\n", "[rules]\nmax_session_hours = 0.0003\n")  # about a second
    config.write_text(text)
    kiosk(config, "badge", "add", ANNA, "anna")
    kiosk(config, "badge", "add", BEN, "ben")
    d = Daemon(config)
    try:
        for uid in (ANNA, BEN):
            d.tap(uid)
            d.line()
        time.sleep(1.3)
        for uid in (ANNA, BEN):
            d.tap(uid)
            assert "flagged for review" in d.line()
        flags = kiosk_json(config, "flagged", "list")
        assert [(f["username"], f["was"]) for f in flags] == [("anna", "open"), ("ben", "open")]
        assert "anna" in kiosk(config, "flagged", "list").stdout
        first, second = flags[0]["id"], flags[1]["id"]
        start = datetime.fromisoformat(flags[0]["from"])
        before = snapshot(config, tmp_path)
        refused(config, "flagged", "resolve", str(first), "--to", iso(now() + timedelta(hours=2)), says="future")
        refused(config, "flagged", "resolve", str(first), "--to", iso(start - timedelta(hours=2)), says="not after")
        refused(config, "flagged", "resolve", str(first), code=2, says="--discard")
        refused(config, "flagged", "resolve", str(first), "--to", iso(now()), "--discard", code=2)
        refused(config, "flagged", "resolve", "999", "--to", iso(now()), says="no flagged record 999")
        refused(config, "flagged", "resolve", str(second), "--discard", says="--yes")
        assert snapshot(config, tmp_path) == before
        end = start + timedelta(seconds=1)
        entry = kiosk_json(config, "flagged", "resolve", str(first), "--to", iso(end))
        assert entry["id"] == first and entry["username"] == "anna"
        assert [e["id"] for e in kiosk_json(config, "queue", "list")] == [first]
        kiosk(config, "flagged", "resolve", str(second), "--discard", "--yes", "--reason", "test")
        assert kiosk_json(config, "flagged", "list") == []
        assert "nothing flagged" in kiosk(config, "flagged", "list").stdout
    finally:
        d.stop()


# ---------------------------------------------------------------- rejected entries


def test_fixing_a_mapping_fixes_and_resends_its_rejected_entries(tmp_path):
    from kiosk.sim.emulator import Emulator

    with Emulator(key="test-key", secret="test-secret", users=["anna"]) as emu:
        config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", emu.url)
        kiosk(config, "badge", "add", ANNA, "anan")  # mistyped
        d = Daemon(config)
        try:
            for _ in range(4):
                d.tap(ANNA)
                d.line()
            assert wait_for(lambda: len(kiosk_json(config, "queue", "list", "--rejected")) == 2)
            [a, b] = [e["id"] for e in kiosk_json(config, "queue", "list", "--rejected")]
            before = snapshot(config, tmp_path)
            refused(config, "queue", "edit", str(a), code=2, says="give --username")
            refused(config, "queue", "edit", str(a), "--username", "an na ", says="trailing spaces")
            refused(config, "queue", "edit", str(a), "--to", iso(now() + timedelta(days=1)), says="future")
            refused(config, "queue", "edit", "999", "--username", "anna", says="entry 999 does not exist")
            assert snapshot(config, tmp_path) == before
            # edit one by hand and leave it rejected; fix the mapping for the other
            edited = kiosk(config, "queue", "edit", str(a), "--username", "anna").stdout
            assert "(was anan" in edited and f"kiosk queue retry {a}" in edited
            hint = kiosk(config, "badge", "update", ANNA, "--username", "anna").stdout
            assert "1 rejected entry of badge 04A1B2C3 went out as 'anan'" in hint and "--fix-rejected" in hint
            assert kiosk_json(config, "queue", "list", "--rejected")[1]["username"] == "anan"  # only offered
            kiosk(config, "queue", "retry", str(a))
            assert "queued again" in kiosk(config, "queue", "edit", str(b), "--username", "anna", "--retry").stdout
            assert wait_for(lambda: len(emu.entries()) == 2)
            assert {e["user"] for e in emu.entries()} == {"anna"}
            assert kiosk_json(config, "queue", "list", "--rejected") == []
        finally:
            d.stop()


def test_fix_rejected_through_badge_update(tmp_path):
    from kiosk.sim.emulator import Emulator

    with Emulator(key="test-key", secret="test-secret", users=["anna"]) as emu:
        config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", emu.url)
        kiosk(config, "badge", "add", ANNA, "anan")
        d = Daemon(config)
        try:
            d.tap(ANNA)
            d.line()
            d.tap(ANNA)
            d.line()
            assert wait_for(lambda: len(kiosk_json(config, "queue", "list", "--rejected")) == 1)
            out = kiosk(config, "badge", "update", ANNA, "--username", "anna", "--fix-rejected").stdout
            assert "1 rejected entry changed to 'anna' and queued again" in out
            assert wait_for(lambda: len(emu.entries()) == 1)
            assert emu.entries()[0]["user"] == "anna"
        finally:
            d.stop()


# ---------------------------------------------------------------- the audit log


def test_log_shows_taps_and_admin_changes_with_who(config, daemon, tmp_path):
    env = clean_env() | {"SUDO_USER": "alice", "LOGNAME": "root"}
    subprocess.run([*KIOSK, "--config", str(config), "badge", "add", BEN, "ben"], env=env, check=True,
                   capture_output=True, timeout=30)
    daemon.tap(ANNA)
    daemon.line()
    daemon.tap(BEN)
    daemon.line()
    daemon.tap(NEW)
    daemon.line()
    time.sleep(0.01)
    mid = now()
    daemon.tap(ANNA)
    daemon.line()
    lines = kiosk_json(config, "log")
    assert [line["kind"] for line in lines][-5:] == ["badge_add", "clock_in", "clock_in", "unknown", "clock_out"]
    assert lines[-5]["by"] == "alice" and lines[-5]["username"] == "ben"
    assert [line["kind"] for line in kiosk_json(config, "log", "--user", "anna")] == ["badge_add", "clock_in",
                                                                                    "clock_out"]
    assert [line["kind"] for line in kiosk_json(config, "log", "--badge", "0x0a0b0c0d")] == ["unknown"]
    assert [line["kind"] for line in kiosk_json(config, "log", "--since", iso(mid - timedelta(seconds=1)),
                                                "--user", "anna")][-1] == "clock_out"
    assert kiosk_json(config, "log", "--until", iso(mid - timedelta(days=1))) == []
    assert len(kiosk_json(config, "log", "--limit", "2")) == 2
    text = kiosk(config, "log", "--user", "ben").stdout
    assert "badge_add" in text and "by=alice" in text
    refused(config, "log", "--since", "yesterday", code=2, says="not an ISO 8601 time")
    refused(config, "log", "--limit", "-1", code=2, says="must not be negative")
    refused(config, "log", "--badge", "zz", says="not hex or decimal")
    refused(config, "log", "--since", iso(now()), "--until", iso(now() - timedelta(days=1)), code=2, says="before")


# ---------------------------------------------------------------- backups


def test_backup_while_running_restore_only_when_stopped(config, daemon, tmp_path):
    daemon.tap(ANNA)
    daemon.line()
    backup = tmp_path / "backup.sqlite"
    out = kiosk(config, "backup", str(backup)).stdout
    assert "integrity ok" in out and "1 badges, 1 open clock-ins" in out
    refused(config, "backup", str(backup), says="exists")
    daemon.tap(ANNA)  # the daemon went on meanwhile
    assert daemon.line().startswith("OUT anna")
    refused(config, "restore", str(backup), "--yes", says="stop it first")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("hello")
    refused(config, "restore", str(junk), "--yes", says="not a kiosk store backup")
    daemon.stop()
    before = snapshot(config, tmp_path)
    refused(config, "restore", str(junk), "--yes", says="not a kiosk store backup")
    refused(config, "restore", str(backup), says="--yes")
    assert snapshot(config, tmp_path) == before
    result = kiosk_json(config, "restore", str(backup), "--yes")
    assert result["counts"]["open"] == 1 and os.path.exists(result["replaced"])
    assert [o["username"] for o in kiosk_json(config, "open", "list")] == ["anna"]
    assert kiosk_json(config, "queue", "list") == []  # the clock-out came after the backup
    d = Daemon(config)  # and the daemon runs on the restored store
    try:
        d.tap(ANNA)
        assert d.line().startswith("OUT anna")
    finally:
        d.stop()


# ---------------------------------------------------------------- status


def test_status_tells_whether_the_daemon_runs(config, daemon, tmp_path):
    status = kiosk_json(config, "status")
    assert status["daemon"]["running"] and status["daemon"]["pid"] == daemon.proc.pid
    text = kiosk(config, "status").stdout
    assert f"running (pid {daemon.proc.pid}" in text and "sender:         " in text
    daemon.kill()
    after = kiosk_json(config, "status")["daemon"]
    assert after["running"] is False and after["pid"] is None and after["last_seen"]
    text = kiosk(config, "status").stdout
    assert "daemon:         not running (last seen" in text and "sender:         not running" in text


def test_relative_state_dir_is_relative_to_the_config_file(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", "state", f"http://127.0.0.1:{closed_port()}/api")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (tmp_path, elsewhere):
        subprocess.run([*KIOSK, "--config", str(config), "badge", "add", "--replace", ANNA, "anna"], cwd=cwd,
                       env=clean_env(), check=True, capture_output=True, timeout=30)
    assert (tmp_path / "state" / "kiosk.sqlite").exists() and not (elsewhere / "state").exists()


def test_everything_printed_from_the_store_is_escaped_and_cut(config, tmp_path):
    kiosk(config, "badge", "add", ANNA, "anna")
    with Store(tmp_path / "state" / "kiosk.sqlite") as store:  # written around the CLI's checks
        with store.transaction() as db:
            db[f"badge:{BEN}"] = {"uid": BEN, "username": "\x1b[2J" + "x" * 100_000, "enabled": True,
                                  "label": "\u200bhidden", "added_at": None, "updated_at": None}
    for args in (("badge", "list"), ("badge", "show", BEN), ("log",)):
        out = kiosk(config, *args).stdout
        assert "\x1b" not in out and "\u200b" not in out and len(out) < 5000, args
    assert "\\x1b[2J" in kiosk(config, "badge", "list").stdout


# ---------------------------------------------------------------- queue list


def test_queue_list_pages_with_a_limit_and_streams_all(config, tmp_path):
    from .test_cli import queue_entries

    kiosk(config, "badge", "add", ANNA, "anna")
    ids = queue_entries(config, tmp_path, 150)
    default = kiosk(config, "queue", "list")
    assert default.stdout.count("anna") == 100 and "100 of 150 shown" in default.stderr
    assert [e["id"] for e in kiosk_json(config, "queue", "list", "--limit", "0")] == ids
    assert [e["id"] for e in kiosk_json(config, "queue", "list", "--limit", "3")] == ids[:3]
    assert "default: 100" in kiosk(config, "queue", "list", "--help").stdout
    refused(config, "queue", "list", "--limit", "x", code=2, says="not a whole number")
