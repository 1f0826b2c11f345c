"""deploy/ansible, run for real: ansible-playbook against this machine (connection local).

Marked ``ansible`` and skipped unless ansible-playbook is installed and
KIOSK_TEST_ANSIBLE=1: ``.ci/run`` installs ansible-core into its own venv and
runs these tests as a separate step (``pytest -m ansible``), after
``ansible-playbook --syntax-check`` and ``ansible-lint``.

Each "kiosk" is localhost below its own throw-away root (the role's
``kiosk_root``, install.sh's KIOSK_ROOT): install.sh really runs (from a real
``git archive`` of HEAD, unpacked on the "kiosk"), kiosk.toml is templated, the
secret comes from a real Ansible Vault file, badges are imported, ``kiosk doctor``
checks the config, the store and the API (the TimeTrack emulator on loopback).
What a Pi adds is not here: no venv build (KIOSK_SKIP_VENV=1; the ``kiosk``
of this checkout runs instead, tested with KIOSK_TEST_VENV=1 in test_install.py),
no systemd (``kiosk_systemd: false``; tests/test_nspawn.py boots one), no kiosk
user (the commands run as root), no reader or GPIO (stdin reader, console feedback).

``kiosk badge import`` is being written by another engineer: until it exists,
FAKE_KIOSK below stands in for that one subcommand (clearly a fake: it says so
in its output), following the contract; every other subcommand is the real one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from kiosk.sim.emulator import Emulator

pytestmark = [
    pytest.mark.ansible,
    pytest.mark.skipif(os.environ.get("KIOSK_TEST_ANSIBLE") != "1",
                       reason="runs ansible-playbook for real: set KIOSK_TEST_ANSIBLE=1 (.ci/run does)"),
]

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = REPO / "deploy" / "ansible"
KIOSK = Path(sys.executable).with_name("kiosk")
KEY = "ci-key"
SECRET = "ci-secret-Zq8!x 7"
VAULT_PASSWORD = "ci-vault-password"
CSV = "uid,username,label,enabled\n04A1B2C3,anna,card 1,true\n04D5E6F7,ben,card 2,true\n"


def has_real_import() -> bool:
    return subprocess.run([str(KIOSK), "badge", "import", "--help"], capture_output=True).returncode == 0


# FAKE `kiosk badge import`, until the real one lands in kiosk/cli.py. The contract:
# CSV uid,username[,label,enabled]; all-or-nothing; --json prints
# {"added", "changed", "unchanged", "removed", "dry_run"}; exit 1 with {"error": ...}.
# It goes through the real Store; removing a badge has no Store method yet, so a
# --prune that would remove one is refused (these tests never need it).
FAKE_KIOSK = textwrap.dedent("""\
    #!{python}
    # FAKE `kiosk badge import` (tests/test_ansible.py); every other command is the real kiosk.
    import csv, json, os, sys
    args = sys.argv[1:]
    if not (len(args) > 4 and args[2:4] == ["badge", "import"]) or {real_import}:
        os.execv({kiosk!r}, [{kiosk!r}, *args])
    from kiosk import badges, config
    from kiosk.store import Store
    settings = config.load(args[1], require_api=False)
    path, flags = args[4], set(args[5:])
    dry = "--dry-run" in flags
    def fail(msg):
        print(json.dumps({{"error": "FAKE import: " + msg}}))
        sys.exit(1)
    rows = {{}}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            uid = badges.parse(row["uid"], settings.badges.decimal_byte_order)
            enabled = (row.get("enabled") or "true").strip().lower() in ("true", "yes", "1")
            rows[uid] = (row["username"].strip(), (row.get("label") or "").strip(), enabled)
    with Store(settings.store_path) as store:
        have = {{b["uid"]: (b["username"], b.get("label", ""), bool(b["enabled"])) for b in store.badges()}}
        added = [u for u in rows if u not in have]
        changed = [u for u in rows if u in have and have[u] != rows[u]]
        removed = [u for u in have if u not in rows] if "--prune" in flags else []
        if removed and not dry:
            fail("removing badges needs the real command")
        if not dry:
            for uid in added + changed:
                name, label, enabled = rows[uid]
                store.add_badge(uid, name, label=label, enabled=enabled, replace=True)
    print(json.dumps({{"added": len(added), "changed": len(changed), "removed": len(removed),
                      "unchanged": len(rows) - len(added) - len(changed), "dry_run": dry, "fake": True}}))
""")


@pytest.fixture(scope="module")
def ansible_bin() -> Path:
    found = shutil.which("ansible-playbook")
    if found is None:
        pytest.skip("ansible-playbook not installed (.ci/run installs ansible-core into .venv-ansible)")
    return Path(found).parent


@pytest.fixture(scope="module")
def emu():
    with Emulator(key=KEY, secret=SECRET) as emulator:
        yield emulator


class Fleet:
    """An inventory of local "kiosks", each below its own root, and ansible-playbook to run on it."""

    def __init__(self, top: Path, ansible_bin: Path, emu: Emulator, hosts: list[str], secrets: dict[str, str]):
        self.top, self.bin, self.hosts = top, ansible_bin, hosts
        inv = top / "inventory"
        (inv / "group_vars" / "site_ci").mkdir(parents=True)
        (inv / "host_vars").mkdir()
        (inv / "badges").mkdir()
        self.csv = inv / "badges" / "site_ci.csv"
        self.csv.write_text(CSV)
        self.kiosk = top / "kiosk-command"
        self.kiosk.write_text(FAKE_KIOSK.format(python=sys.executable, kiosk=str(KIOSK),
                                                real_import=has_real_import()))
        self.kiosk.chmod(0o755)
        (inv / "hosts.yml").write_text("kiosks:\n  children:\n    site_ci:\n      hosts:\n"
                                       + "".join(f"        {h}:\n" for h in hosts))
        self.password_file = top / "vault-password"
        self.password_file.write_text(VAULT_PASSWORD + "\n")
        self.password_file.chmod(0o600)
        site = inv / "group_vars" / "site_ci"
        (site / "main.yml").write_text(textwrap.dedent(f"""\
            ---
            ansible_connection: local
            ansible_python_interpreter: {shutil.which("python3")}
            ansible_become: false
            kiosk_systemd: false
            kiosk_user: root
            kiosk_group: root
            kiosk_source_dir: {REPO}
            kiosk_install_env: {{KIOSK_SKIP_VENV: "1", KIOSK_MODEL_FILE: /nonexistent}}
            kiosk_command: {self.kiosk}
            kiosk_api_base_url: {emu.url}
            kiosk_api_key: {KEY}
            kiosk_reader_type: stdin
            kiosk_feedback_type: console
            kiosk_clock_sync_file: ""
            kiosk_config_extra: {{api: {{connect_timeout: 2.0, read_timeout: 2.0}}}}
            kiosk_badges_csv: "{{{{ inventory_dir }}}}/badges/site_ci.csv"
            kiosk_doctor_checks: [config, api, state, store, secret]
        """))
        for host in hosts:
            root = self.root(host)
            root.mkdir(parents=True)
            (inv / "host_vars" / f"{host}.yml").write_text(textwrap.dedent(f"""\
                ---
                kiosk_name: {host}-door
                kiosk_root: {root}
                kiosk_state_dir: {root}/var/lib/kiosk
                kiosk_api_secret_file: {root}/etc/kiosk/secret
                kiosk_cache_dir: /var/cache/kiosk
                kiosk_api_secret: "{{{{ vault_secret_{host.replace('-', '_')} }}}}"
            """))
        # The secrets, as the README says to make them: a vault file encrypted with ansible-vault.
        vault = site / "vault.yml"
        vault.write_text("---\n" + "".join(f"vault_secret_{h.replace('-', '_')}: {json.dumps(secrets[h])}\n"
                                           for h in hosts))
        self.run_tool("ansible-vault", "encrypt", str(vault))
        assert vault.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
        self.inventory = inv

    def root(self, host: str) -> Path:
        return self.top / "roots" / host

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIOSK_", "ANSIBLE_"))}
        env.update(ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"), ANSIBLE_HOME=str(self.top / "ansible-home"),
                   ANSIBLE_VAULT_PASSWORD_FILE=str(self.password_file), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", PATH=f"{self.bin}:{env.get('PATH', '')}")
        return env

    def run_tool(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True, env=self.env(),
                              cwd=ANSIBLE_DIR, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def play(self, playbook: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "ansible-playbook"), "-i", str(self.inventory / "hosts.yml"),
                               playbook, *args], capture_output=True, text=True, env=self.env(), cwd=ANSIBLE_DIR,
                              timeout=900)

    def kiosk_json(self, host: str, *args: str):
        proc = subprocess.run([str(KIOSK), "--config", str(self.root(host) / "etc/kiosk/kiosk.toml"), *args,
                               "--json"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    result = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        result[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return result


def task_results(output: str, name: str) -> list[str]:
    """The status lines ("ok: [host]", "changed: [host]", ...) printed under a task."""
    blocks = re.split(r"^TASK \[", output, flags=re.M)
    lines = []
    for block in blocks:
        if block.split("]", 1)[0].endswith(name):
            lines += [ln for ln in block.splitlines() if re.match(r"^(ok|changed|skipping|fatal|failed): ", ln)]
    return lines


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, ansible_bin, emu) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("fleet"), ansible_bin, emu, ["kiosk-ci-01"],
                 {"kiosk-ci-01": SECRET})


@pytest.fixture(scope="module")
def installed(fleet) -> subprocess.CompletedProcess:
    """site.yml's first run on the fleet, once per module: the tests below build on an installed kiosk
    whichever of them runs (alone, with -k, or in any order)."""
    return fleet.play("site.yml")


def test_site_installs_configures_imports_badges_and_passes_doctor(fleet, installed):
    proc = installed
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    root = fleet.root("kiosk-ci-01")
    assert recap(out)["kiosk-ci-01"]["failed"] == 0 and recap(out)["kiosk-ci-01"]["changed"] > 0
    # install.sh ran from the unpacked release.
    assert (root / "var/cache/kiosk/src/kiosk/deploy/install.sh").exists()
    assert (root / "opt/kiosk/kiosk/cli/__init__.py").read_bytes() == (REPO / "kiosk/cli/__init__.py").read_bytes()
    assert (root / "etc/systemd/system/kiosk.service").exists()
    # kiosk.toml from the inventory; no secret in it.
    text = (root / "etc/kiosk/kiosk.toml").read_text()
    conf = tomllib.loads(text)
    assert conf["kiosk"]["name"] == "kiosk-ci-01-door"
    assert conf["reader"]["type"] == "stdin" and conf["api"]["read_timeout"] == 2.0
    assert "secret" not in conf["api"] or conf["api"].keys() >= {"secret_file"}
    assert SECRET not in text
    assert stat.S_IMODE((root / "etc/kiosk/kiosk.toml").stat().st_mode) == 0o640
    # The secret from the vault: root-only file, never in Ansible's output.
    secret = root / "etc/kiosk/secret"
    assert secret.read_text() == SECRET + "\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert SECRET not in out
    # The badges from the site's CSV, through kiosk badge import.
    assert task_results(out, "Import the badges (kiosk badge import --json)") == ["changed: [kiosk-ci-01]"]
    assert {(b["uid"], b["username"]) for b in fleet.kiosk_json("kiosk-ci-01", "badge", "list")} == {
        ("04A1B2C3", "anna"), ("04D5E6F7", "ben")}
    # The host ended with kiosk doctor (which checked the API with the vault's secret).
    assert task_results(out, "Run kiosk doctor") == ["ok: [kiosk-ci-01]"]
    assert "Report the checks that failed" in out and "skipping: [kiosk-ci-01]" in out


def test_second_run_changes_nothing(fleet, installed):
    proc = fleet.play("site.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert recap(out)["kiosk-ci-01"]["changed"] == 0, [ln for ln in out.splitlines() if ln.startswith("changed")]
    assert task_results(out, "Import the badges (kiosk badge import --json)") == ["ok: [kiosk-ci-01]"]
    assert task_results(out, "Run deploy/install.sh") == ["ok: [kiosk-ci-01]"]


def test_badges_playbook_changes_only_when_the_csv_does(fleet, installed):
    fleet.csv.write_text(CSV.replace("ben,card 2", "benjamin,card 2") + "04C0FFEE,carla,,false\n")
    # --check: the import runs with --dry-run, reports the change, and the store stays as it was.
    check = fleet.play("badges.yml", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert recap(check.stdout)["kiosk-ci-01"]["changed"] == 1
    assert {b["username"] for b in fleet.kiosk_json("kiosk-ci-01", "badge", "list")} == {"anna", "ben"}
    proc = fleet.play("badges.yml", "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap(proc.stdout)["kiosk-ci-01"]["changed"] == 1
    assert re.search(r"added: 1\n\s+changed: 1\n", proc.stdout), proc.stdout
    assert {(b["username"], bool(b["enabled"])) for b in fleet.kiosk_json("kiosk-ci-01", "badge", "list")} == {
        ("anna", True), ("benjamin", True), ("carla", False)}
    again = fleet.play("badges.yml")
    assert again.returncode == 0 and recap(again.stdout)["kiosk-ci-01"]["changed"] == 0


def test_a_bad_csv_fails_the_host_and_changes_nothing(fleet, installed):
    before = fleet.kiosk_json("kiosk-ci-01", "badge", "list")
    fleet.csv.write_text("uid,username\nnot-a-badge,zoe\n")
    try:
        proc = fleet.play("badges.yml")
    finally:
        fleet.csv.write_text(CSV.replace("ben,card 2", "benjamin,card 2") + "04C0FFEE,carla,,false\n")
    assert proc.returncode != 0
    assert recap(proc.stdout)["kiosk-ci-01"]["failed"] == 1
    assert fleet.kiosk_json("kiosk-ci-01", "badge", "list") == before


def test_a_config_change_outside_api_asks_for_a_restart_an_api_change_for_a_reload(fleet, installed):
    """The handler choice (the restart key in kiosk.toml); with kiosk_systemd false both are skipped."""
    conf = fleet.root("kiosk-ci-01") / "etc/kiosk/kiosk.toml"
    proc = fleet.play("site.yml", "-e", "kiosk_api_timezone=local", "-e", "kiosk_doctor=false")
    assert proc.returncode == 0, proc.stdout
    assert 'timezone = "local"' in conf.read_text()
    assert task_results(proc.stdout, "Decide between reload and restart") == ["ok: [kiosk-ci-01]"]
    assert "RUNNING HANDLER [kiosk : Reload kiosk]" in proc.stdout
    restart = fleet.play("site.yml", "-e", "kiosk_rules_debounce_seconds=5", "-e", "kiosk_doctor=false", "-v")
    assert restart.returncode == 0, restart.stdout
    assert "debounce_seconds = 5.0" in conf.read_text()
    assert re.search(r"kiosk_restart_needed: true", restart.stdout), restart.stdout
    back = fleet.play("site.yml", "-e", "kiosk_doctor=false")  # the inventory's values again
    assert back.returncode == 0 and 'timezone = "UTC"' in conf.read_text()


def test_kiosk_status_gathers_one_table(fleet, installed, tmp_path):
    report = tmp_path / "fleet.txt"
    proc = fleet.play("kiosk_status.yml", "-e", f"kiosk_status_report={report}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = report.read_text().splitlines()
    assert table[0].split()[:8] == ["kiosk", "daemon", "queue", "oldest", "rejected", "flagged", "reader", "clock"]
    row = table[1].split()
    assert row[0] == "kiosk-ci-01" and row[2] == "0" and row[3] == "-"
    assert "kiosk-ci-01" in proc.stdout  # also printed
    print("\n".join(table))


def test_canary_failure_stops_the_rollout(tmp_path, ansible_bin, emu):
    """serial [1, 5, 25%] with max_fail_percentage 0: a kiosk whose doctor fails stops the others."""
    hosts = ["kiosk-ci-01", "kiosk-ci-02", "kiosk-ci-03"]
    fleet = Fleet(tmp_path, ansible_bin, emu, hosts,
                  {"kiosk-ci-01": "wrong-secret", "kiosk-ci-02": SECRET, "kiosk-ci-03": SECRET})
    proc = fleet.play("site.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "kiosk doctor on kiosk-ci-01 failed" in out and "api:" in out
    assert "wrong-secret" not in out
    counts = recap(out)
    assert counts["kiosk-ci-01"]["failed"] == 1
    for later in hosts[1:]:
        assert later not in counts or counts[later]["ok"] == 0
        assert not (fleet.root(later) / "etc/kiosk").exists(), later


# A stand-in for the fields `kiosk status --json` is getting (daemon, reader, clock: the
# contract another engineer is implementing); the table's code for them runs here on them.
FAKE_STATUS = """#!/bin/sh
# FAKE `kiosk status --json` with the contract's fields (tests/test_ansible.py)
cat <<'JSON'
{"outbox": 12, "oldest_queued_at": "%s", "rejected": 1, "flagged": 2,
 "reader": {"ok": false, "message": "no answer from the RC522"},
 "clock": {"trusted": true, "source": "ntp", "skew_seconds": 0.01, "held": 0},
 "daemon": {"running": true, "pid": 4242, "last_seen": "2026-01-01T00:00:00+00:00"}}
JSON
"""


def test_kiosk_status_table_shows_every_contract_field_and_failures(fleet, installed, tmp_path):
    from datetime import UTC, datetime, timedelta

    oldest = (datetime.now(UTC) - timedelta(hours=1, minutes=5, seconds=30)).isoformat(timespec="microseconds")
    fake = tmp_path / "fake-status"
    fake.write_text(FAKE_STATUS % oldest)
    fake.chmod(0o755)
    inv = fleet.inventory
    hosts = inv / "hosts-status.yml"
    hosts.write_text("kiosks:\n  children:\n    site_ci:\n      hosts:\n"
                     f"        kiosk-ci-01:\n"
                     f"        kiosk-ci-fake:\n          kiosk_command: {fake}\n          kiosk_root: {tmp_path}\n"
                     f"        kiosk-ci-broken:\n          kiosk_command: /nonexistent/kiosk\n"
                     f"          kiosk_root: {tmp_path}\n")
    report = tmp_path / "fleet.txt"
    proc = subprocess.run([str(fleet.bin / "ansible-playbook"), "-i", str(hosts), "kiosk_status.yml",
                           "-e", f"kiosk_status_report={report}"], capture_output=True, text=True,
                          env=fleet.env(), cwd=ANSIBLE_DIR, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = report.read_text()
    print(table)
    rows = {ln.split()[0]: ln for ln in table.splitlines()[1:]}
    assert set(rows) == {"kiosk-ci-01", "kiosk-ci-fake", "kiosk-ci-broken"}
    assert rows["kiosk-ci-fake"].split()[:6] == ["kiosk-ci-fake", "up", "12", "65m", "1", "2"]  # ages as kiosk status shows them
    assert "DOWN no answer" in rows["kiosk-ci-fake"] and "synced ntp" in rows["kiosk-ci-fake"]
    assert rows["kiosk-ci-fake"].endswith("rejected entries, reader")
    broken = rows["kiosk-ci-broken"].split()
    assert broken[1:8] == ["-"] * 7 and len(broken) > 8  # no values, and the error in the last column
