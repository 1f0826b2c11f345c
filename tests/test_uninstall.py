"""deploy/uninstall.sh, run for real below a throw-away KIOSK_ROOT after install.sh.

As in tests/test_install.py: KIOSK_ROOT keeps the scripts away from the real
/etc, /opt, /var/lib, systemctl and the user database, and KIOSK_SKIP_VENV=1
skips the venv build, so the venv here is a stand-in directory. The backup
before --purge goes through ``kiosk backup`` (KIOSK_BIN): the real command when
this checkout has it, else FAKE_BACKUP below, a clearly marked stand-in that
follows the contract (copy the store with SQLite's online backup, exit 0).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_install import SECRET, install, mode, snapshot

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "uninstall.sh"
KIOSK = Path(sys.executable).with_name("kiosk")


def uninstall(root: Path | None, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    if root is not None:
        env["KIOSK_ROOT"] = str(root)
    env.update(extra)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=120)


def actions(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("  + ")]


def has_real_backup() -> bool:
    proc = subprocess.run([str(KIOSK), "backup", "--help"], capture_output=True, text=True)
    return proc.returncode == 0


# FAKE, until `kiosk backup FILE` lands in kiosk/cli.py (another engineer's work): the
# contract's behaviour (a consistent online copy of the store named by the config, exit 0),
# through sqlite3's backup API. Replaced by the real command as soon as it exists.
FAKE_BACKUP = textwrap.dedent("""\
    #!{python}
    # FAKE `kiosk backup` for tests/test_uninstall.py: stands in until the real command exists.
    import sqlite3, sys
    from kiosk import config
    args = sys.argv[1:]
    assert args[0] == "--config" and args[2] == "backup", args
    settings = config.load(args[1], require_api=False)
    src = sqlite3.connect(f"file:{{settings.store_path}}?mode=ro", uri=True)
    dst = sqlite3.connect(args[3])
    src.backup(dst)
    dst.close()
    src.close()
""")


@pytest.fixture
def kiosk_bin(tmp_path) -> Path:
    if has_real_backup():
        return KIOSK
    fake = tmp_path / "fake-kiosk-backup"
    fake.write_text(FAKE_BACKUP.format(python=sys.executable))
    fake.chmod(0o755)
    return fake


@pytest.fixture
def installed(tmp_path) -> Path:
    """install.sh below a root, a config whose store lives below it, a store with one badge, a venv stand-in."""
    root = tmp_path / "root"
    root.mkdir()
    proc = install(root, stdin=SECRET + "\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conf = root / "etc/kiosk/kiosk.toml"
    state = root / "var/lib/kiosk"
    conf.write_text(textwrap.dedent(f"""\
        [kiosk]
        name = "test"
        state_dir = "{state}"
        [metrics]
        textfile = "/var/lib/prometheus/node-exporter/kiosk.prom"
    """))
    add = subprocess.run([str(KIOSK), "--config", str(conf), "badge", "add", "04A1B2C3", "anna"],
                         capture_output=True, text=True)
    assert add.returncode == 0, add.stderr
    (root / "opt/kiosk/.venv/bin").mkdir(parents=True)  # KIOSK_SKIP_VENV: a stand-in venv
    (root / "opt/kiosk/.venv/bin/kiosk").write_text("#!/bin/sh\n")
    prom = root / "var/lib/prometheus/node-exporter"
    prom.mkdir(parents=True)
    (prom / "kiosk.prom").write_text("kiosk_queue_entries 0\n")
    (prom / "node.prom").write_text("other_metric 1\n")
    (root / "etc/systemd/system/kiosk.service.d").mkdir()
    (root / "etc/systemd/system/kiosk.service.d/metrics.conf").write_text("[Service]\n")
    return root


def test_shellcheck_clean():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck; .ci/run does)")
    proc = subprocess.run(["shellcheck", "-x", str(SCRIPT)], capture_output=True, text=True)  # -x: script-lib.sh too
    assert proc.returncode == 0, proc.stdout


def test_help_and_bad_arguments():
    proc = uninstall(None, "--help")
    assert proc.returncode == 0 and "--purge" in proc.stdout and "KIOSK_ROOT" in proc.stdout
    proc = uninstall(None, "--bogus")
    assert proc.returncode == 1 and "unknown argument: --bogus" in proc.stderr
    proc = uninstall(None, "--prefix", "opt/kiosk", "--dry-run")
    assert proc.returncode == 1 and "absolute" in proc.stderr
    proc = uninstall(None, "--backup", "/tmp/x.sqlite", "--dry-run")
    assert proc.returncode == 1 and "--backup goes with --purge" in proc.stderr


def test_removes_unit_link_venv_and_code_but_keeps_config_secret_and_store(installed):
    r = installed
    proc = uninstall(r)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for gone in ("etc/systemd/system/kiosk.service", "etc/systemd/system/kiosk.service.d", "usr/local/bin/kiosk",
                 "opt/kiosk", "var/lib/prometheus/node-exporter/kiosk.prom"):
        assert not (r / gone).exists() and not (r / gone).is_symlink(), gone
    assert (r / "var/lib/prometheus/node-exporter/node.prom").exists()  # not ours
    assert (r / "etc/kiosk/secret").read_text() == SECRET + "\n" and mode(r / "etc/kiosk/secret") == 0o600
    assert (r / "etc/kiosk/kiosk.toml").exists()
    assert (r / "var/lib/kiosk/kiosk.sqlite").exists()
    assert f"kept: {r}/etc/kiosk" in proc.stdout and f"kept: {r}/var/lib/kiosk" in proc.stdout
    assert not (r / "var/backups").exists()
    # Idempotent: nothing left to do.
    again = uninstall(r)
    assert again.returncode == 0, again.stderr
    assert actions(again.stdout) == []
    # And install.sh brings it back with the config, secret and store as they were.
    back = install(r, stdin="another\n")
    assert back.returncode == 0, back.stderr
    assert (r / "etc/kiosk/secret").read_text() == SECRET + "\n"
    assert (r / "opt/kiosk/kiosk/cli/__init__.py").exists()


def test_dry_run_plans_and_changes_nothing(installed, kiosk_bin):
    before = snapshot(installed)
    for args in ([], ["--purge"]):
        proc = uninstall(installed, "--dry-run", *args, KIOSK_BIN=str(kiosk_bin))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert actions(proc.stdout) == []
        assert "Dry run done: nothing was changed." in proc.stdout
        assert f"would run: rm -f {installed}/etc/systemd/system/kiosk.service" in proc.stdout
        assert f"would run: rm -rf {installed}/opt/kiosk" in proc.stdout
        assert (f"would run: rm -rf {installed}/etc/kiosk" in proc.stdout) is bool(args)
        assert (f"--config {installed}/etc/kiosk/kiosk.toml backup " in proc.stdout) is bool(args)
    assert snapshot(installed) == before


def test_purge_backs_up_the_store_first_then_removes_everything(installed, kiosk_bin, tmp_path):
    r = installed
    backup = tmp_path / "backups" / "kiosk.sqlite"
    proc = uninstall(r, "--purge", "--backup", str(backup), KIOSK_BIN=str(kiosk_bin))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for gone in ("etc/kiosk", "var/lib/kiosk", "opt/kiosk", "usr/local/bin/kiosk", "etc/systemd/system/kiosk.service"):
        assert not (r / gone).exists(), gone
    assert mode(backup) == 0o600
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        dumped = "\n".join(db.iterdump())
    assert tables and "anna" in dumped and "04A1B2C3" in dumped  # the badge made it into the copy
    assert f"The store's backup: {backup}" in proc.stdout
    assert proc.stdout.index("backup") < proc.stdout.index(f"rm -rf {r}/var/lib/kiosk")


def test_purge_default_backup_location(installed, kiosk_bin):
    proc = uninstall(installed, "--purge", KIOSK_BIN=str(kiosk_bin))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    backups = list((installed / "var/backups/kiosk").glob("kiosk-*Z.sqlite"))
    assert len(backups) == 1 and mode(backups[0]) == 0o600
    assert mode(installed / "var/backups/kiosk") == 0o700


@pytest.mark.parametrize("how", ["fails", "missing", "empty"])
def test_purge_refused_when_the_backup_fails_and_nothing_changes(installed, tmp_path, how):
    broken = tmp_path / "broken-kiosk"
    if how == "fails":
        broken.write_text("#!/bin/sh\necho 'kiosk: error: disk full' >&2\nexit 1\n")
    elif how == "empty":
        broken.write_text('#!/bin/sh\n: > "$4"\n')  # exit 0 but no copy: not a backup
    if how != "missing":
        broken.chmod(0o755)
    before = snapshot(installed)
    backup = tmp_path / "b" / "kiosk.sqlite"
    proc = uninstall(installed, "--purge", "--backup", str(backup), KIOSK_BIN=str(broken))
    assert proc.returncode == 1
    assert "backup" in proc.stderr and "nothing was purged or removed" in proc.stderr
    assert snapshot(installed) == before
    assert not backup.exists()


def test_purge_never_overwrites_an_existing_backup(installed, kiosk_bin, tmp_path):
    backup = tmp_path / "kiosk.sqlite"
    backup.write_text("yesterday's backup")
    before = snapshot(installed)
    proc = uninstall(installed, "--purge", "--backup", str(backup), KIOSK_BIN=str(kiosk_bin))
    assert proc.returncode == 1 and "never overwritten" in proc.stderr
    assert backup.read_text() == "yesterday's backup"
    assert snapshot(installed) == before


def test_purge_without_a_store_needs_no_backup(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert install(root, stdin=SECRET + "\n").returncode == 0
    (root / "etc/kiosk/kiosk.toml").write_text(f'[kiosk]\nstate_dir = "{root}/var/lib/kiosk"\n')
    proc = uninstall(root, "--purge", KIOSK_BIN="/nonexistent")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to back up" in proc.stdout
    assert not (root / "etc/kiosk").exists() and not (root / "var/lib/kiosk").exists()


def test_a_clone_used_in_place_keeps_its_sources(tmp_path):
    root = tmp_path / "root"
    clone = root / "srv/kiosk"
    clone.mkdir(parents=True)
    (clone / ".git").mkdir()
    (clone / "pyproject.toml").write_text('[project]\nname = "kiosk"\n')
    (clone / ".venv/bin").mkdir(parents=True)
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/kiosk").symlink_to("/srv/kiosk/.venv/bin/kiosk")
    proc = uninstall(root, "--prefix", "/srv/kiosk")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (clone / ".venv").exists() and not (root / "usr/local/bin/kiosk").is_symlink()
    assert (clone / "pyproject.toml").exists() and (clone / ".git").is_dir()


def test_leaves_a_foreign_link_and_refuses_a_foreign_prefix(tmp_path):
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/kiosk").symlink_to("/usr/bin/true")
    proc = uninstall(root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "usr/local/bin/kiosk").is_symlink() and "left alone" in proc.stderr
    other = root / "srv/app"
    other.mkdir(parents=True)
    (other / "data.txt").write_text("precious")
    proc = uninstall(root, "--prefix", "/srv/app")
    assert proc.returncode == 1 and "holds something else" in proc.stderr
    assert (other / "data.txt").read_text() == "precious"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="the script is for Debian / Raspberry Pi OS")
def test_dry_run_against_the_real_system_changes_nothing():
    from tests.test_install import real_state

    before = real_state()
    proc = uninstall(None, "--dry-run", "--purge", "--no-systemd")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert actions(proc.stdout) == []
    assert "Dry run done: nothing was changed." in proc.stdout
    assert real_state() == before
