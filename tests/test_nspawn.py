"""install.sh's systemd branch, for real: a Debian booted with systemd-nspawn.

This machine's PID 1 is not systemd, so the unit cannot run here directly.
``systemd-nspawn --boot`` starts a real systemd (the same version as the host's
Debian) in a container made by ``debootstrap``; the test drives it with
``nsenter`` into the container's namespaces (no machined or D-Bus on the host:
``--register=no --keep-unit``). Inside, for real: install.sh as root (apt, the
kiosk user and groups, the venv built by pip, the unit, daemon-reload), then
``systemctl enable --now`` (Type=notify: start returns once the daemon sent
READY=1), a clock-in and clock-out that reach the TimeTrack emulator on the
host's loopback (the container shares the host's network), ``systemctl reload``
(SIGHUP through ExecReload=), ``systemctl stop``, and uninstall.sh.

The only test-made part is the reader: a drop-in gives the unit
``StandardInput=file:`` a FIFO that the test writes badge ids into, with
``reader.type = "stdin"`` (there is no RC522 in a container). Everything else
is the shipped unit with its sandbox.

Marked ``nspawn`` and skipped unless KIOSK_TEST_NSPAWN=1 (.ci/run sets it), as
root, with systemd-nspawn and debootstrap installed. The root file system is
built once into build/nspawn/ inside the clone (about 1.5 minutes; nothing is
cached outside it) and is reused while it exists.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kiosk.sim.emulator import Emulator
from tests.kioskproc import wait_for

pytestmark = [
    pytest.mark.nspawn,
    pytest.mark.skipif(os.environ.get("KIOSK_TEST_NSPAWN") != "1",
                       reason="boots a container with systemd-nspawn: set KIOSK_TEST_NSPAWN=1 (.ci/run does)"),
]

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "nspawn"
ROOTFS = BUILD / "rootfs"
KEY = "nspawn-key"
SECRET = "nspawn-secret-Zq8!x 7"
BOOT_PACKAGES = "systemd,systemd-sysv,dbus,python3,ca-certificates"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def host_mirror() -> tuple[str, str]:
    """The host's Debian mirror and release (the registry this machine may use)."""
    suite = "bookworm"
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            suite = line.split("=", 1)[1].strip('"') or suite
    for source in [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]:
        if source.exists():
            match = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s", source.read_text() + "\n", re.M)
            if match:
                return match.group(1), suite
    return "http://deb.debian.org/debian", suite


def snapshot_sources(dest: Path) -> None:
    """The repository's tracked files as they are now, like the clone install.sh expects (not the live tree)."""
    dest.mkdir()
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True)
    if listed.returncode == 0:
        files = [f for f in listed.stdout.decode().split("\0") if f and (REPO / f).exists()]
        tar = subprocess.run(["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", "-"], input="\0".join(files).encode(),
                             capture_output=True, check=True)
        subprocess.run(["tar", "-C", str(dest), "-xf", "-"], input=tar.stdout, check=True)
    else:
        shutil.copytree(REPO, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", ".venv*", "build", "__pycache__", "*.egg-info"))


def build_rootfs() -> None:
    """debootstrap a minimal Debian with systemd; into a temp name first, so a killed build is not reused."""
    if (ROOTFS / "usr/lib/systemd/systemd").exists():
        return
    mirror, suite = host_mirror()
    tmp = BUILD / "rootfs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={BOOT_PACKAGES}", suite, str(tmp),
                           mirror], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (tmp / "etc/hostname").write_text("kiosk-nspawn\n")
    tmp.rename(ROOTFS)


class Container:
    """A booted container: ``run`` executes a command inside as root, through nsenter."""

    def __init__(self, share: Path):
        self.share = share
        self.name = f"kiosk-ci-{os.getpid()}"
        self.proc = subprocess.Popen(
            # --ephemeral: a throw-away copy of the root file system, so every run starts from a clean Debian.
            ["systemd-nspawn", "-D", str(ROOTFS), "--ephemeral", "--boot", "--register=no", "--keep-unit",
             "--console=passive",
             "-M", self.name, f"--bind-ro={share / 'src'}:/src", f"--bind={share}:/share",
             *([f"--bind-ro={CA_BUNDLE}"] if os.path.exists(CA_BUNDLE) else [])],
            stdout=open(share / "nspawn.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = None
        assert wait_for(self._find_init, timeout=30), (share / "nspawn.log").read_text()
        assert wait_for(lambda: self.run("systemctl", "is-system-running", check=False).stdout.strip()
                        in ("running", "degraded"), timeout=90, interval=0.5), self.run(
            "systemctl", "--failed", "--no-pager", check=False).stdout

    def _find_init(self) -> bool:
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except FileNotFoundError:
            return False
        for child in children:
            if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                self.pid = int(child)
                return True
        return False

    def run(self, *argv: str, input: str | None = None, check: bool = True, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LANG": "C.UTF-8"}
        base.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") and k != "PIP_FIND_LINKS"})
        base.update(env or {})
        proc = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "env", "-i",
                               *[f"{k}={v}" for k, v in base.items()], *argv],
                              input=input, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc

    def show(self, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", "kiosk", *[f"--property={p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.run("journalctl", "-u", "kiosk", "--no-pager", "-o", "cat", check=False).stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn halts the container's systemd
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("systemd-nspawn needs root")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install systemd-container debootstrap; .ci/run does)")
    build_rootfs()
    share = tmp_path_factory.mktemp("share")
    share.chmod(0o755)
    snapshot_sources(share / "src")
    box = Container(share)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
def emu():
    with Emulator(key=KEY, secret=SECRET, users=["anna"]) as emulator:
        yield emulator


CONFIG = """\
[kiosk]
name = "nspawn"

[api]
base_url = "{url}"
key = "{key}"

[reader]
type = "stdin"

[feedback]
type = "console"

[rules]
debounce_seconds = 0
min_session_seconds = 1

[clock]
sync_file = ""
"""


def test_install_enable_start_ready_tap_reload_stop_uninstall(container, emu):
    c = container
    # ---- install.sh, the real systemd branch (apt, user, groups, venv, unit, daemon-reload)
    proc = c.run("bash", "/src/deploy/install.sh", input=SECRET + "\n", timeout=1200)
    out = proc.stdout + proc.stderr
    assert SECRET not in out
    assert "+ systemctl daemon-reload" in out
    assert "apt-get install" in out  # python3-venv, git, procps, build dependencies were missing
    assert c.run("stat", "-c", "%U:%G %a", "/etc/kiosk/secret").stdout.split() == ["root:root", "600"]
    assert c.run("id", "-nG", "kiosk").stdout.split() == ["kiosk", "spi", "gpio", "input", "i2c"]
    assert c.run("systemctl", "is-enabled", "kiosk", check=False).stdout.strip() == "disabled"
    again = c.run("bash", "/src/deploy/install.sh", input="", timeout=600)
    assert [ln for ln in again.stdout.splitlines() if ln.startswith("  + ")] == [], again.stdout

    # ---- configuration; the reader is a FIFO the test writes into (the test's only stand-in)
    (c.share / "kiosk.toml").write_text(CONFIG.format(url=emu.url, key=KEY))
    c.run("install", "-m", "0640", "-o", "root", "-g", "kiosk", "/share/kiosk.toml", "/etc/kiosk/kiosk.toml")
    c.run("mkdir", "-p", "/etc/systemd/system/kiosk.service.d")
    (c.share / "reader.conf").write_text("[Service]\nStandardInput=file:/share/taps.fifo\n")
    c.run("cp", "/share/reader.conf", "/etc/systemd/system/kiosk.service.d/test-reader.conf")
    c.run("systemctl", "daemon-reload")
    c.run("runuser", "-u", "kiosk", "--", "kiosk", "badge", "add", "04A1B2C3", "anna")
    fifo = c.share / "taps.fifo"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)
    writer = os.open(fifo, os.O_RDWR)  # held open: the daemon's stdin never sees end of input
    try:
        # ---- enable --now: Type=notify, so this returns only after READY=1
        c.run("systemctl", "enable", "--now", "kiosk", timeout=120)
        state = c.show("ActiveState", "SubState", "Type", "MainPID", "StatusText", "NRestarts")
        assert (state["ActiveState"], state["SubState"], state["Type"]) == ("active", "running", "notify"), state
        pid = state["MainPID"]
        assert c.run("systemctl", "is-enabled", "kiosk").stdout.strip() == "enabled"
        assert c.run("ps", "-o", "user=", "-p", pid, check=False).stdout.strip() in ("kiosk", "")
        # ---- a clock-in and a clock-out, delivered to the emulator on the host
        os.write(writer, b"04A1B2C3\n")
        assert wait_for(lambda: "clock_in" in c.journal(), timeout=30), c.journal()
        time.sleep(1.2)  # min_session_seconds = 1
        os.write(writer, b"04A1B2C3\n")
        assert wait_for(lambda: len(emu.entries()) == 1, timeout=60), c.journal()
        assert emu.entries()[0]["user"] == "anna"
        # ---- reload: SIGHUP through ExecReload=, same process
        c.run("systemctl", "reload", "kiosk", timeout=60)
        assert wait_for(lambda: "configuration reloaded" in c.journal(), timeout=30), c.journal()
        assert c.show("MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}
        # ---- the sandbox as systemd itself rates it, online
        security = c.run("systemd-analyze", "security", "kiosk", "--no-pager", check=False).stdout
        score = re.search(r"Overall exposure level for kiosk\.service: (\d+\.\d+)", security)
        assert score and float(score.group(1)) <= 2.0, security
        # ---- stop: SIGTERM, a clean exit
        c.run("systemctl", "stop", "kiosk", timeout=120)
        state = c.show("ActiveState", "Result", "ExecMainStatus")
        assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, state
        assert "kiosk stopped" in c.journal()
        (c.share / "journal.txt").write_text(c.journal())
        print(c.journal())

        # ---- uninstall.sh: the systemd branch (stop, disable, remove, daemon-reload); config, secret, store kept
        c.run("systemctl", "start", "kiosk", timeout=120)
        un = c.run("bash", "/src/deploy/uninstall.sh", timeout=300)
        assert "+ systemctl stop kiosk" in un.stdout and "+ systemctl disable kiosk" in un.stdout, un.stdout
        assert "+ systemctl daemon-reload" in un.stdout
        assert c.run("systemctl", "is-active", "kiosk", check=False).stdout.strip() == "inactive"
        assert c.run("test", "-e", "/etc/systemd/system/kiosk.service", check=False).returncode == 1
        assert c.run("test", "-e", "/opt/kiosk", check=False).returncode == 1
        assert c.run("test", "-L", "/usr/local/bin/kiosk", check=False).returncode == 1
        assert c.run("test", "-f", "/etc/kiosk/secret").returncode == 0
        assert c.run("test", "-f", "/var/lib/kiosk/kiosk.sqlite").returncode == 0
    finally:
        os.close(writer)
