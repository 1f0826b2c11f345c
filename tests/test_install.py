"""deploy/install.sh and deploy/kiosk.toml.example.

The script runs for real, but below a throw-away KIOSK_ROOT (which also skips
apt, users and groups, raspi-config and systemctl) and with KIOSK_SKIP_VENV=1
so no venv is built: these tests never touch the real /etc, /opt, /var/lib or
user database, and take about a second. The venv build (a real, non-editable
pip install) is tested only with KIOSK_TEST_VENV=1, as it needs the package
index and takes longer. One test dry-runs the script against the real system
and checks that nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from kiosk import config

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "install.sh"
EXAMPLE = ROOT / "deploy" / "kiosk.toml.example"
UNIT = ROOT / "systemd" / "kiosk.service"
SECRET = "s3cret-Zq8!x 7"  # a space and a "!" on purpose: it must survive as it is
BASE_URL = "https://acme.timetrackenterprise.com/api/v2/ext"


def script_env(root: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env["KIOSK_SKIP_VENV"] = "1"
    env["KIOSK_MODEL_FILE"] = "/nonexistent/model"  # the same plan on any machine, a Pi 5 included
    if root is not None:
        env["KIOSK_ROOT"] = str(root)
    env.update(extra)
    return env


def install(root: Path | None, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], input=stdin, capture_output=True, text=True,
                          env=script_env(root, **extra), timeout=120)


def snapshot(top: Path) -> dict[str, tuple]:
    """Everything below ``top``: type, mode, owner, size, content hash or link target, mtime."""
    result = {}
    for path in sorted([top, *top.rglob("*")]):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = ("link", os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            what = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            what = ("dir", None)
        result[str(path.relative_to(top))] = (what, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                              st.st_size, st.st_mtime_ns)
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def actions(output: str) -> list[str]:
    """The lines for changes made ("  + ...")."""
    return [ln for ln in output.splitlines() if ln.startswith("  + ")]


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def installed(root) -> Path:
    proc = install(root, stdin=SECRET + "\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


# ---------------------------------------------------------------- the script itself


def test_bash_syntax_and_shellcheck():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", "-x", str(SCRIPT)], capture_output=True, text=True)  # -x: script-lib.sh too
    assert proc.returncode == 0, proc.stdout


def test_help_and_bad_arguments():
    proc = install(None, "--help")
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "KIOSK_ROOT" in proc.stdout
    proc = install(None, "--bogus")
    assert proc.returncode == 1 and "unknown argument: --bogus" in proc.stderr
    proc = install(None, "--prefix", "relative/dir", "--dry-run")
    assert proc.returncode == 1 and "absolute" in proc.stderr


# ---------------------------------------------------------------- dry run


def test_dry_run_plans_everything_and_changes_nothing(root):
    proc = install(root, "--dry-run", "--no-systemd", stdin=SECRET + "\n", KIOSK_SKIP_VENV="0")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert list(root.iterdir()) == [], "a dry run created files"
    assert actions(out) == []
    assert "Dry run done: nothing was changed." in out
    r = str(root)
    for planned in (
        "would copy the repository's files to " + r + "/opt/kiosk",
        f"would run: python3 -m venv {r}/opt/kiosk/.venv",
        f"would run: {r}/opt/kiosk/.venv/bin/pip install --quiet --disable-pip-version-check {r}/opt/kiosk\\[keyboard\\,display\\,metrics\\]",
        f"would run: ln -sfn /opt/kiosk/.venv/bin/kiosk {r}/usr/local/bin/kiosk",
        f"would run: install -d -m 0750 {r}/etc/kiosk",
        f"would run: install -m 0640 {EXAMPLE} {r}/etc/kiosk/kiosk.toml",
        f"would read the API secret from stdin and write it to {r}/etc/kiosk/secret (root:root 0600)",
        f"would run: install -d -m 0750 {r}/var/lib/kiosk",
        f"would install systemd/kiosk.service as {r}/etc/systemd/system/kiosk.service",
    ):
        assert planned in out, planned
    assert "--editable" not in out and " -e " not in out  # the daemon runs an installed copy
    assert "rpi-lgpio" not in out  # not a Pi 5
    assert SECRET not in out + proc.stderr  # stdin is not even read


@pytest.mark.parametrize("model, swap", [
    ("Raspberry Pi 5 Model B Rev 1.0", True),
    ("Raspberry Pi Compute Module 5 Rev 1.0", True),
    ("Raspberry Pi 4 Model B Rev 1.5", False),
])
def test_dry_run_swaps_rpi_gpio_for_rpi_lgpio_on_a_pi_5(root, tmp_path, model, swap):
    model_file = tmp_path / "model"
    model_file.write_bytes(model.encode() + b"\0")  # as in /proc/device-tree/model
    proc = install(root, "--dry-run", KIOSK_SKIP_VENV="0", KIOSK_MODEL_FILE=str(model_file))
    assert proc.returncode == 0, proc.stderr
    pip = f"{root}/opt/kiosk/.venv/bin/pip"
    assert (f"would run: {pip} uninstall --quiet -y RPi.GPIO rpi-lgpio" in proc.stdout) is swap
    assert (f"would run: {pip} install --quiet --disable-pip-version-check rpi-lgpio" in proc.stdout) is swap


REAL_PATHS = ["/etc/kiosk", "/etc/kiosk/kiosk.toml", "/etc/kiosk/secret", "/opt/kiosk", "/var/lib/kiosk",
              "/etc/systemd/system/kiosk.service", "/usr/local/bin/kiosk"]


def real_state() -> list:
    state = []
    for p in REAL_PATHS:
        try:
            st = os.lstat(p)
            state.append((p, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            state.append((p, None))
    for db, name in [("passwd", "kiosk"), ("group", "kiosk"), ("group", "spi"), ("group", "gpio"), ("group", "input"),
                     ("group", "i2c")]:
        state.append(subprocess.run(["getent", db, name], capture_output=True, text=True).stdout)
    return state


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="the script is for Debian / Raspberry Pi OS")
def test_dry_run_against_the_real_system_changes_nothing():
    before = real_state()
    proc = install(None, "--dry-run", "--no-systemd", stdin=SECRET + "\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert actions(proc.stdout) == []
    for header in ("== Packages", "== User kiosk", "== Code in /opt/kiosk", "== Configuration in /etc/kiosk",
                   "== State directory /var/lib/kiosk", "== SPI", "== I2C", "== systemd unit /etc/systemd/system/kiosk.service"):
        assert header in proc.stdout
    assert "systemctl skipped (--no-systemd)" in proc.stdout
    assert "Dry run done: nothing was changed." in proc.stdout
    assert real_state() == before


# ---------------------------------------------------------------- a real run below KIOSK_ROOT


def test_install_lays_out_files_with_their_modes(installed):
    r = installed
    assert mode(r / "etc/kiosk") == 0o750
    assert mode(r / "etc/kiosk/kiosk.toml") == 0o640
    assert (r / "etc/kiosk/kiosk.toml").read_text() == EXAMPLE.read_text()
    assert mode(r / "etc/kiosk/secret") == 0o600
    assert (r / "etc/kiosk/secret").read_text() == SECRET + "\n"
    assert [p.name for p in (r / "etc/kiosk").iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert mode(r / "var/lib/kiosk") == 0o750
    assert mode(r / "etc/systemd/system/kiosk.service") == 0o644
    assert (r / "etc/systemd/system/kiosk.service").read_text() == UNIT.read_text()
    assert os.readlink(r / "usr/local/bin/kiosk") == "/opt/kiosk/.venv/bin/kiosk"
    code = r / "opt/kiosk"
    assert (code / "kiosk/cli/__init__.py").read_bytes() == (ROOT / "kiosk/cli/__init__.py").read_bytes()
    assert (code / "pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()
    for left_out in (".git", ".venv", ".pytest_cache"):
        assert not (code / left_out).exists(), left_out
    assert not list(code.rglob("__pycache__"))
    assert mode(code) == 0o755 and mode(code / "kiosk/cli/__init__.py") == 0o644  # readable by the kiosk user


def test_second_run_changes_nothing_and_keeps_config_and_secret(installed):
    before = snapshot(installed)
    proc = install(installed, stdin="another-secret\n")
    assert proc.returncode == 0, proc.stderr
    assert actions(proc.stdout) == []
    assert "kiosk.toml exists, left as it is" in proc.stdout
    assert "secret exists, left as it is" in proc.stdout
    assert snapshot(installed) == before
    assert "another-secret" not in proc.stdout + proc.stderr


def test_an_edited_config_is_never_overwritten(installed):
    conf = installed / "etc/kiosk/kiosk.toml"
    conf.write_text('[api]\nbase_url = "https://x.example"\nkey = "k"\n')
    conf.chmod(0o600)
    proc = install(installed)
    assert proc.returncode == 0, proc.stderr
    assert conf.read_text() == '[api]\nbase_url = "https://x.example"\nkey = "k"\n'
    assert mode(conf) == 0o600


def test_update_replaces_the_old_copy_but_keeps_the_venv(installed):
    code = installed / "opt/kiosk"
    (code / "kiosk/removed_upstream.py").write_text("")
    (code / ".venv").mkdir()
    (code / ".venv/keep").write_text("venv")
    proc = install(installed)
    assert proc.returncode == 0, proc.stderr
    assert "+ copy the repository's files" in proc.stdout
    assert not (code / "kiosk/removed_upstream.py").exists()
    assert (code / ".venv/keep").read_text() == "venv"


def test_refuses_a_prefix_that_holds_something_else(root):
    other = root / "srv/app"
    other.mkdir(parents=True)
    (other / "data.txt").write_text("precious")
    proc = install(root, "--prefix", "/srv/app")
    assert proc.returncode == 1
    assert "holds something else than the kiosk" in proc.stderr
    assert (other / "data.txt").read_text() == "precious"


def test_prefix_moves_code_symlink_and_exec_start(root):
    proc = install(root, "--prefix", "/srv/kiosk/")
    assert proc.returncode == 0, proc.stderr
    assert (root / "srv/kiosk/kiosk/cli/__init__.py").exists()
    assert not (root / "opt").exists()
    assert os.readlink(root / "usr/local/bin/kiosk") == "/srv/kiosk/.venv/bin/kiosk"
    unit = (root / "etc/systemd/system/kiosk.service").read_text()
    assert "\nExecStart=/srv/kiosk/.venv/bin/kiosk --config /etc/kiosk/kiosk.toml run\n" in unit
    assert unit.replace("/srv/kiosk/", "/opt/kiosk/") == UNIT.read_text()


def test_no_secret_on_stdin_creates_none_and_says_how(root):
    proc = install(root, stdin="")
    assert proc.returncode == 0, proc.stderr
    assert not (root / "etc/kiosk/secret").exists()
    assert "no API secret given" in proc.stderr
    assert "sudo sh -c 'umask 077; cat > /etc/kiosk/secret'" in proc.stdout


def test_next_steps(installed):
    proc = install(installed)
    out = proc.stdout
    assert "sudo -u kiosk kiosk badge add" in out
    assert "sudo systemctl enable --now kiosk" in out
    assert "-p LoadCredential=timetrack-secret:/etc/kiosk/secret /opt/kiosk/.venv/bin/kiosk doctor" in out


def test_secret_from_a_terminal_is_asked_for_without_echo(root):
    master, slave = pty.openpty()
    proc = subprocess.Popen(["bash", str(SCRIPT)], stdin=slave, stdout=slave, stderr=slave,
                            env=script_env(root), close_fds=True)
    os.close(slave)
    seen = b""

    def read_for(seconds: float, until: bytes | None = None) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in seen):
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    return
                if not chunk:
                    return
                seen += chunk

    try:
        read_for(30, until=b"API secret (input hidden")
        assert b"API secret (input hidden" in seen, seen.decode(errors="replace")
        os.write(master, SECRET.encode() + b"\n")
        read_for(30, until=b"Next steps")
        assert proc.wait(timeout=30) == 0
        read_for(0.5)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert SECRET.encode() not in seen  # not echoed by the terminal, not printed
    assert (root / "etc/kiosk/secret").read_text() == SECRET + "\n"


def test_the_secret_is_never_a_process_argument_or_environment(root, tmp_path):
    """Every program the script starts, with its full argv and environment, as recorded by strace."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    log = tmp_path / "execve.log"
    proc = subprocess.run(["strace", "-f", "-v", "-s", "100000", "-e", "trace=execve", "-o", str(log),
                           "bash", str(SCRIPT)], input=SECRET + "\n", capture_output=True, text=True,
                          env=script_env(root), timeout=120)
    trace = log.read_text() if log.exists() else ""
    if proc.returncode != 0 and "execve(" not in trace:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    assert trace.count("execve(") > 20  # it did see the script's programs (install, chmod, mv, ...)
    assert SECRET not in trace
    assert SECRET not in proc.stdout + proc.stderr
    assert (root / "etc/kiosk/secret").read_text() == SECRET + "\n"


# ---------------------------------------------------------------- the example configuration


def kiosk_cli(*args: str, cred_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KIOSK_CONFIG", "CREDENTIALS_DIRECTORY")}
    if cred_dir is not None:
        env["CREDENTIALS_DIRECTORY"] = str(cred_dir)
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def fill(text: str) -> str:
    assert text.count('\nbase_url = ""\n') == 1 and text.count('\nkey = ""\n') == 1
    return text.replace('\nbase_url = ""\n', f'\nbase_url = "{BASE_URL}"\n').replace(
        '\nkey = ""\n', '\nkey = "k-123"\n')


def credentials(tmp_path: Path, secret: str = SECRET) -> Path:
    cred_dir = tmp_path / "credentials"
    cred_dir.mkdir()
    (cred_dir / config.CREDENTIAL_NAME).write_text(secret + "\n")
    (cred_dir / config.CREDENTIAL_NAME).chmod(0o400)
    return cred_dir


def test_example_has_no_secret_and_otherwise_default_values():
    raw = tomllib.loads(EXAMPLE.read_text())
    assert "secret" not in raw["api"] and "secret_file" not in raw["api"]
    assert raw["reader"]["type"] == "mfrc522" and raw["feedback"]["type"] == "gpio"
    own_values = {("kiosk", "name"), ("api", "base_url"), ("api", "key")}
    for section, values in raw.items():
        defaults = {f.name: f.default for f in fields(config.SECTIONS[section])}
        for key, value in values.items():
            if (section, key) not in own_values:
                assert value == defaults[key], f"{section}.{key}: {value!r} is not the default {defaults[key]!r}"


def test_filled_example_passes_config_check_with_the_credential(tmp_path):
    conf = tmp_path / "kiosk.toml"
    conf.write_text(fill(EXAMPLE.read_text()))
    conf.chmod(0o640)
    proc = kiosk_cli("--config", str(conf), "config", "check", "--json", cred_dir=credentials(tmp_path))
    assert proc.returncode == 0, proc.stderr
    settings = json.loads(proc.stdout)["settings"]
    assert settings["api"]["base_url"] == BASE_URL and settings["api"]["key"] == "k-123"
    assert settings["api"]["secret"] == "********"
    assert settings["reader"]["type"] == "mfrc522" and settings["feedback"]["type"] == "gpio"
    assert settings["kiosk"]["state_dir"] == "/var/lib/kiosk"
    assert SECRET not in proc.stdout + proc.stderr


def test_unfilled_example_is_refused_naming_the_key(tmp_path):
    conf = tmp_path / "kiosk.toml"
    shutil.copy(EXAMPLE, conf)
    proc = kiosk_cli("--config", str(conf), "config", "check", cred_dir=credentials(tmp_path))
    assert proc.returncode == config.EX_CONFIG
    assert "api.base_url: missing (required)" in proc.stderr


def test_filled_example_without_the_credential_is_refused(tmp_path):
    conf = tmp_path / "kiosk.toml"
    conf.write_text(fill(EXAMPLE.read_text()))
    proc = kiosk_cli("--config", str(conf), "config", "check")
    assert proc.returncode == config.EX_CONFIG
    assert "api.secret: missing" in proc.stderr and config.CREDENTIAL_NAME in proc.stderr


def test_installed_config_and_secret_work_together(installed, tmp_path):
    """What the unit's LoadCredential= does: the secret file becomes $CREDENTIALS_DIRECTORY/timetrack-secret."""
    conf = installed / "etc/kiosk/kiosk.toml"
    conf.write_text(fill(conf.read_text()))
    cred_dir = tmp_path / "creds"
    cred_dir.mkdir()
    shutil.copy(installed / "etc/kiosk/secret", cred_dir / config.CREDENTIAL_NAME)
    proc = kiosk_cli("--config", str(conf), "config", "check", "--json", cred_dir=cred_dir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["settings"]["api"]["secret"] == "********"


# ---------------------------------------------------------------- the venv (opt-in)


@pytest.mark.skipif(os.environ.get("KIOSK_TEST_VENV") != "1",
                    reason="builds a real venv from the package index: set KIOSK_TEST_VENV=1")
def test_real_venv_build_is_a_regular_install_and_idempotent(root):
    proc = install(root, stdin=SECRET + "\n", KIOSK_SKIP_VENV="0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    venv = root / "opt/kiosk/.venv"
    version = subprocess.run([str(venv / "bin/kiosk"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "kiosk" in version.stdout
    site = next(venv.glob("lib/python3*/site-packages"))
    assert (site / "kiosk/cli/__init__.py").exists()  # a copy, not a link to the source tree
    assert not list(site.glob("__editable__*"))
    assert not (root / "opt/kiosk/build").exists()
    again = install(root, KIOSK_SKIP_VENV="0")
    assert again.returncode == 0, again.stderr
    assert actions(again.stdout) == [], again.stdout
    assert re.search(r"== Python environment .*\n  ok: up to date", again.stdout)
