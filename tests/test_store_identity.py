"""A store deleted or replaced under a running daemon: noticed, shown, and no tap acknowledged into it."""

from __future__ import annotations

import os
import shutil

from kiosk.store import Store

from .kioskproc import Daemon, closed_port, kiosk, write_config

ANNA, BEN = "04A1B2C3", "04D5E6F7"


def daemon_with_badges(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state", f"http://127.0.0.1:{closed_port()}/api")
    kiosk(config, "badge", "add", ANNA, "anna")
    kiosk(config, "badge", "add", BEN, "ben")
    d = Daemon(config, log_level="INFO")
    d.tap(ANNA)
    assert d.line().startswith("IN  anna")
    return config, d


def test_deleted_store_turns_taps_into_errors_and_a_fault(tmp_path):
    config, d = daemon_with_badges(tmp_path)
    for name in os.listdir(tmp_path / "state"):
        if name.startswith("kiosk.sqlite"):
            os.unlink(tmp_path / "state" / name)  # rm kiosk.sqlite* under the running daemon
    d.wait_log("was deleted while open")  # noticed by the main loop within a few seconds
    status = d.line(skip_status=False)
    assert status.startswith("STATUS fault") and "deleted" in status
    d.tap(BEN)
    line = d.line()
    assert line.startswith("ERROR") and "deleted" in line  # never acknowledged into a ghost file
    assert d.stop() == 0
    assert not (tmp_path / "state" / "kiosk.sqlite").exists()  # and nothing silently re-created it


def test_replaced_store_is_noticed(tmp_path):
    config, d = daemon_with_badges(tmp_path)
    state = tmp_path / "state"
    backup = tmp_path / "copy.sqlite"
    with Store(tmp_path / "other" / "kiosk.sqlite") as other:  # another store file, moved into place
        other.add_badge(ANNA, "anna")
    shutil.copy(tmp_path / "other" / "kiosk.sqlite", backup)
    os.replace(backup, state / "kiosk.sqlite")
    d.wait_log("was replaced while open")
    d.tap(BEN)
    assert d.line().startswith("ERROR")
    assert d.stop() == 0


def test_taps_answer_error_at_once_even_between_checks(tmp_path):
    """The tap itself checks the file: no window in which a tap lands in the deleted file."""
    config, d = daemon_with_badges(tmp_path)
    os.unlink(tmp_path / "state" / "kiosk.sqlite")
    d.tap(BEN)  # possibly before the main loop's next look
    line = d.line()
    assert line.startswith("ERROR") and "deleted" in line
    assert d.stop() == 0
