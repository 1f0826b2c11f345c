"""Each tap reaches journald with structured fields (`journalctl -u kiosk KIOSK_USERNAME=anna`),
through systemd-python's real JournalHandler (only its final send is captured)."""

from __future__ import annotations

import io
import logging
import time

from systemd.journal import JournalHandler

from kiosk import config
from kiosk.app import build
from kiosk.feedback.console import ConsoleFeedback
from kiosk.readers.stdin import StdinReader
from kiosk.store import Store

from .kioskproc import closed_port


def test_taps_carry_kiosk_fields_to_the_journal(tmp_path):
    settings = config.from_dict({
        "kiosk": {"name": "j", "state_dir": str(tmp_path)},
        "api": {"base_url": f"http://127.0.0.1:{closed_port()}/api", "key": "k", "secret": "s"},
        "reader": {"type": "stdin"}, "feedback": {"type": "console"},
        "rules": {"debounce_seconds": 0, "min_session_seconds": 0}, "clock": {"sync_file": ""},
    })
    with Store(settings.store_path) as store:
        store.add_badge("04A1B2C3", "anna")
    sent: list[dict] = []
    handler = JournalHandler(sender_function=lambda MESSAGE, **fields: sent.append({"MESSAGE": MESSAGE, **fields}))  # noqa: N803 - journal.send's name
    logger = logging.getLogger("kiosk")
    logger.addHandler(handler)
    old_level, logger.level = logger.level, logging.INFO
    daemon = build(settings, reader=StdinReader(io.StringIO("")), feedback=ConsoleFeedback(io.StringIO()))
    try:
        daemon.handle("04A1B2C3")
        time.sleep(0.002)  # a session longer than the API's millisecond
        daemon.handle("04A1B2C3")
        daemon.handle("DEADBEEF")
    finally:
        logger.removeHandler(handler)
        logger.level = old_level
        daemon.sender.store.close()
        daemon.store.close()
        daemon.signals.close()
    taps = [f for f in sent if "KIOSK_OUTCOME" in f]
    assert [(f["KIOSK_OUTCOME"], f["KIOSK_USERNAME"], f["KIOSK_BADGE"]) for f in taps] == [
        ("clock_in", "anna", "04A1B2C3"), ("clock_out", "anna", "04A1B2C3"), ("unknown", "", "DEADBEEF")]
    assert taps[0]["KIOSK_ENTRY_ID"] == "" and isinstance(taps[1]["KIOSK_ENTRY_ID"], int)
