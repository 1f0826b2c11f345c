"""Torture: the disk fills up under a running kiosk, then space comes back.

The state directory lives on a size-limited file system: a 4 MB tmpfs
(mounted here as root), else a 4 MB ext4 image on a loop device; without
root neither can be mounted and the test says so. With the disk full every
tap is answered (``ERROR`` for those that could not be written: nothing was
recorded, the person taps again) and the daemon stays up; once space returns
taps are recorded again, the store passes ``PRAGMA integrity_check``, and it
holds exactly what was acknowledged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kiosk.store import Store

from .kioskproc import Daemon, closed_port, write_config

pytestmark = pytest.mark.torture

USERS = {f"04D15C{i:02X}": f"clerk{i}" for i in range(4)}
SIZE_MB = 4


@contextlib.contextmanager
def small_filesystem(where: Path):
    """A ``SIZE_MB`` file system mounted at ``where`` (tmpfs, else a loop-mounted ext4 image)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a size-limited file system (tmpfs or a loop device); CI runs as root")
    where.mkdir()
    tried = []
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0755", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        tried.append(f"tmpfs: {mounted.stderr.strip()}")
        image = where.parent / "disk.img"
        with open(image, "wb") as fh:
            fh.truncate(SIZE_MB * 2**20)
        steps = [["mkfs.ext4", "-q", "-F", str(image)], ["mount", "-o", "loop", str(image), str(where)]]
        for step in steps:
            if shutil.which(step[0]) is None:
                pytest.skip(f"cannot make a small file system: {'; '.join(tried)}; {step[0]} missing")
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                tried.append(f"{step[0]}: {done.stderr.strip()}")
                pytest.skip(f"cannot make a small file system: {'; '.join(tried)}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; its path."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        for size in (65536, 4096, 1):
            while True:
                try:
                    fh.write(block[:size])
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return filler


def test_full_disk_gives_error_feedback_no_corruption_and_recovers(tmp_path):
    with small_filesystem(tmp_path / "small") as disk:
        state = disk / "state"
        config = write_config(tmp_path / "kiosk.toml", state, f"http://127.0.0.1:{closed_port()}/api/v2/ext")
        with Store(state / "kiosk.sqlite") as store:
            for uid, user in USERS.items():
                store.add_badge(uid, user)
        open_users: set[str] = set()
        entries = {u: 0 for u in USERS.values()}
        uids = list(USERS)

        def tap(n: int) -> str:
            uid = uids[n % len(uids)]
            daemon.tap(uid)
            line = daemon.line()
            daemon.stderr_so_far()  # keep the log pipe drained: each failed write logs a traceback
            user = USERS[uid]
            if line.startswith(("IN ", "OUT ")):
                assert line.split()[0] == ("OUT" if user in open_users else "IN"), line
                if user in open_users:
                    open_users.discard(user)
                    entries[user] += 1
                else:
                    open_users.add(user)
            else:
                assert line.startswith("ERROR"), line
            return line.split()[0]

        daemon = Daemon(config)
        try:
            assert [tap(n) for n in range(8)] == ["IN"] * 4 + ["OUT"] * 4
            filler = fill(disk)
            answers = [tap(n) for n in range(200)]
            assert "ERROR" in answers, "a full disk never refused a tap"
            first_error = answers.index("ERROR")
            assert answers[-20:] == ["ERROR"] * 20, "taps kept failing and succeeding while the disk stayed full"
            assert daemon.proc.poll() is None
            filler.unlink()
            later = [tap(n) for n in range(40)]
            assert "ERROR" not in later[-30:], f"no recovery once space came back: {later}"
            assert daemon.stop() == 0
        finally:
            if daemon.proc.poll() is None:
                daemon.kill()
        with Store(state / "kiosk.sqlite", create=False) as store:
            assert store.integrity_check() == "ok"
            assert {o.username for o in store.open_clock_ins()} == open_users
            queued = [e.username for e in store.outbox()]
        assert {u: queued.count(u) for u in USERS.values()} == entries
        assert first_error < 200
