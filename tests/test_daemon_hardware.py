"""The daemon over the simulated RC522 (real mfrc522 library code on a fake SPI chip) and
gpiozero's MockFactory: a tap from the lowest layer to the pins and the store."""

import io
import os
import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk import config, readers
from kiosk.app import build
from kiosk.exc import StoreError
from kiosk.feedback.console import ConsoleFeedback
from kiosk.sim import rc522 as fakespi
from kiosk.store import Store

from .kioskproc import closed_port, wait_for


@pytest.fixture
def settings(tmp_path):
    return config.from_dict({
        "kiosk": {"name": "hw", "state_dir": str(tmp_path / "state")},
        "api": {"base_url": f"http://127.0.0.1:{closed_port()}/api/v2/ext", "key": "k", "secret": "s",
                "backoff_initial": 0.05, "probe_interval": 0.2},
        "reader": {"type": "mfrc522", "poll_interval": 0.02, "release_seconds": 0.1},
        "feedback": {"type": "console"},
        "rules": {"debounce_seconds": 0, "min_session_seconds": 0},
        "clock": {"sync_file": ""},
    })


class Running:
    """A Daemon in a thread (signals are only installed from the main thread)."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.thread = threading.Thread(target=lambda: setattr(self, "code", daemon.run()), daemon=True)
        self.thread.start()

    def stop(self):
        self.daemon.request_stop()
        self.thread.join(20)
        assert not self.thread.is_alive()
        return self.code


def test_taps_from_the_rc522_reach_the_store_and_reader_outages_are_reported(settings, tmp_path):
    anna = fakespi.FakeCard("04A1B2C3")
    ben = fakespi.FakeCard("04D5E6F7A8B9C0")  # 7-byte: read through cascade level 2
    out = io.StringIO()
    with Store(settings.store_path) as store:
        store.add_badge("04A1B2C3", "anna")
        store.add_badge("04D5E6F7A8B9C0", "ben")
    hw = fakespi.board()  # the reader's factory: the real mfrc522 library over this board, sys.modules untouched
    run = Running(build(settings, reader=readers.create(settings.reader, factory=hw),
                        feedback=ConsoleFeedback(out), tick=0.05))
    try:
        chip = hw.chip
        chip.place(anna)
        assert wait_for(lambda: "IN  anna" in out.getvalue())
        time.sleep(0.3)  # the card stays on the reader: still one tap
        assert out.getvalue().count("anna") == 1
        chip.remove(anna)
        chip.place(ben)
        assert wait_for(lambda: "IN  ben" in out.getvalue())
        chip.remove(ben)
        assert wait_for(lambda: not hw.chip.cards)
        time.sleep(0.2)  # anna's card has been away longer than release_seconds
        chip.place(anna)
        assert wait_for(lambda: "OUT anna" in out.getvalue())
        chip.remove(anna)

        chip.unplug()
        assert wait_for(lambda: "STATUS fault" in out.getvalue())
        with Store(settings.store_path, create=False) as store:
            assert wait_for(lambda: store.status_value("reader", {}).get("ok") is False)
        chip.plug()
        with Store(settings.store_path, create=False) as store:
            assert wait_for(lambda: store.status_value("reader", {}).get("ok") is True)
        chip.place(ben)
        assert wait_for(lambda: "OUT ben" in out.getvalue())  # reads work again after recovery
    finally:
        code = run.stop()
    assert code == 0
    with Store(settings.store_path, create=False) as store:
        assert sorted(e.username for e in store.outbox()) == ["anna", "ben"]


@pytest.mark.parametrize("uid", ["12345678", "04112233445566", "00000000", "12345678901234567890"])
def test_all_digit_uids_read_by_the_rc522_clock_in(settings, uid):
    """Issue 7: about 2% of real badges (UIDs made only of digits) were INVALID at every tap.

    The daemon builds the reader from its configuration here; ``installed()`` makes
    the fake board the RC522 reader's default factory for the block.
    """
    out = io.StringIO()
    with Store(settings.store_path) as store:
        store.add_badge(uid, "dora")
    with fakespi.installed() as hw:
        run = Running(build(settings, feedback=ConsoleFeedback(out), tick=0.05))
        try:
            hw.chip.place(fakespi.FakeCard(uid))
            assert wait_for(lambda: "IN  dora" in out.getvalue() or "INVALID" in out.getvalue())
            assert "INVALID" not in out.getvalue()
        finally:
            code = run.stop()
    assert code == 0
    with Store(settings.store_path, create=False) as store:
        assert [(a.kind, a.fields["uid"]) for a in store.audit(limit=5)] == [("clock_in", uid), ("badge_add", uid)]


def test_gpio_feedback_in_the_daemon(settings, tmp_path):
    import os

    from kiosk.feedback.gpio import GpioFeedback
    from kiosk.readers.stdin import StdinReader

    factory = MockFactory()
    try:
        feedback = GpioFeedback(settings.feedback, pin_factory=factory)
        with Store(settings.store_path) as store:
            store.add_badge("04A1B2C3", "anna")
        read_end, write_end = os.pipe()
        with os.fdopen(read_end) as stream:
            run = Running(build(settings, reader=StdinReader(stream), feedback=feedback, tick=0.05))
            os.write(write_end, b"04A1B2C3\n")
            green = factory.pin(settings.feedback.green_pin)
            assert wait_for(lambda: any(state for _, state in green.states))  # clock-in: green LED on
            os.close(write_end)  # end of input stops the daemon
            run.thread.join(20)
            assert run.code == 0
        with Store(settings.store_path, create=False) as store:
            assert [o.username for o in store.open_clock_ins()] == ["anna"]
    finally:
        factory.reset()


def test_taps_before_clock_sync_are_held_then_corrected_and_sent(tmp_path):
    """Invariant 5: no entry leaves with times stamped by an unsynchronised clock."""
    import os

    from kiosk import clock
    from kiosk.sim.emulator import Emulator
    from kiosk.readers.stdin import StdinReader

    sync_file = tmp_path / "synchronized"
    with Emulator(key="k", secret="s") as emu:
        settings = config.from_dict({
            "kiosk": {"name": "clock", "state_dir": str(tmp_path / "state")},
            "api": {"base_url": emu.url, "key": "k", "secret": "s", "backoff_initial": 0.05, "probe_interval": 0.1},
            "reader": {"type": "stdin"}, "feedback": {"type": "none"},
            "rules": {"debounce_seconds": 0, "min_session_seconds": 0},
            # server_date off: here only the sync file may vouch for the clock (TimeTrack's
            # Date header is the other witness, tested in tests/test_clock_trust.py).
            "clock": {"sync_file": str(sync_file), "server_date": False},
        })
        with Store(settings.store_path) as store:
            store.add_badge("04A1B2C3", "anna")
        read_end, write_end = os.pipe()
        with os.fdopen(read_end) as stream:
            run = Running(build(settings, reader=StdinReader(stream), tick=0.05))
            before = clock.utcnow()
            os.write(write_end, b"04A1B2C3\n")
            time.sleep(0.005)  # a session longer than the API's millisecond
            os.write(write_end, b"04A1B2C3\n")
            with Store(settings.store_path, create=False) as store:
                assert wait_for(lambda: store.outbox_count() == 1)
                [entry] = store.outbox()
                assert entry.start_unsynced["boot"] == clock.boot_id() and entry.end_unsynced and entry.held
                time.sleep(0.5)  # the sender is running and the API is up, yet it holds the entry
                assert emu.entries() == [] and store.outbox_count() == 1
                sync_file.touch()  # timesyncd: the clock is synchronised now
                assert wait_for(lambda: len(emu.entries()) == 1)
            os.close(write_end)
            run.thread.join(20)
        [sent] = emu.entries()
        start, end = clock.from_api(sent["from"]), clock.from_api(sent["to"])
        # corrected from CLOCK_BOOTTIME: here the wall clock was right all along, so within a second of it
        assert abs((start - before).total_seconds()) < 1 and start < end


class HangingApi:
    """Accepts connections, reads the request, then never answers until released."""

    def __init__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/v2/ext"
        self.requests = 0
        self.got_request = threading.Event()
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn):
        with conn:
            if conn.recv(65536):
                self.requests += 1
                self.got_request.set()
            self.release.wait()

    def close(self):
        self.release.set()
        self.sock.close()


def test_taps_never_wait_for_a_post_in_flight(tmp_path):
    """Invariant 1: while the sender is stuck inside a POST, every tap still gets its feedback."""
    import os

    from kiosk.readers.stdin import StdinReader

    api = HangingApi()
    try:
        settings = config.from_dict({
            "kiosk": {"state_dir": str(tmp_path / "state")},
            "api": {"base_url": api.url, "key": "k", "secret": "s", "read_timeout": 600},
            "reader": {"type": "stdin"}, "feedback": {"type": "console"},
            "rules": {"debounce_seconds": 0, "min_session_seconds": 0}, "clock": {"sync_file": ""},
        })
        with Store(settings.store_path) as store:
            store.add_badge("04A1B2C3", "anna")
            store.add_badge("04D5E6F7", "ben")
        out = io.StringIO()
        read_end, write_end = os.pipe()
        with os.fdopen(read_end) as stream:
            run = Running(build(settings, reader=StdinReader(stream), feedback=ConsoleFeedback(out), tick=0.05))
            def tap(badge: bytes) -> None:
                time.sleep(0.005)  # a person's pace: sessions longer than the API's millisecond
                os.write(write_end, badge + b"\n")

            tap(b"04A1B2C3")
            tap(b"04A1B2C3")
            assert api.got_request.wait(20)  # the sender is now blocked inside the first POST
            for badge in (b"04D5E6F7", b"04D5E6F7", b"04A1B2C3", b"04A1B2C3"):
                tap(badge)
            assert wait_for(lambda: out.getvalue().count("OUT ") == 3), out.getvalue()
            assert not api.release.is_set() and api.requests == 1  # ...and still is: no tap waited for it
            with Store(settings.store_path, create=False) as store:
                assert store.outbox_count() == 3
            api.close()
            os.close(write_end)
            run.thread.join(30)
        assert run.code == 0
    finally:
        api.close()


def test_a_failing_start_is_reported_and_everything_is_closed(settings, caplog):
    from kiosk.delivery.sender import Sender
    from kiosk.readers.stdin import StdinReader

    closed = []

    class Feedback(ConsoleFeedback):
        def close(self):
            closed.append("feedback")

    class BrokenSender(Sender):
        def start(self):
            raise RuntimeError("sender cannot start")

    store, sender_store = Store(settings.store_path), Store(settings.store_path)
    daemon = build(settings, store=store, sender=BrokenSender(sender_store, settings.api),
                   reader=StdinReader(io.StringIO("")), feedback=Feedback(io.StringIO()))
    assert daemon.run() == 1
    assert "sender cannot start" in caplog.text and "cannot join thread" not in caplog.text
    assert closed == ["feedback"]
    for s in (store, sender_store):  # closed by the daemon: a closed store refuses reads
        with pytest.raises(StoreError, match="closed"):
            s.outbox_count()


def test_watchdog_stops_when_a_tap_is_stuck(settings):
    """A store write that never returns: the watchdog pings stop, so systemd restarts the kiosk."""
    from kiosk.readers.stdin import StdinReader

    release, entered = threading.Event(), threading.Event()

    class HangingStore(Store):
        def record(self, *args, **kwargs):
            entered.set()
            release.wait(20)
            return super().record(*args, **kwargs)

    reader_in, tap_out = os.pipe()
    daemon = build(settings, store=HangingStore(settings.store_path), reader=StdinReader(os.fdopen(reader_in)),
                   stuck_after=0.3, tick=0.05)
    run = Running(daemon)
    try:
        assert wait_for(daemon.healthy)
        os.write(tap_out, b"04A1B2C3\n")
        assert entered.wait(10)
        assert wait_for(lambda: not daemon.healthy(), timeout=10)
        release.set()
        assert wait_for(daemon.healthy, timeout=10)
    finally:
        release.set()
        os.close(tap_out)
        assert run.stop() == 0
