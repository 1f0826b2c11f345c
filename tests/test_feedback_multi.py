"""MultiFeedback and feedback.create: several devices as one, one failing device never affects the others."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap

import pytest

from kiosk import config, feedback as feedback_module
from kiosk.feedback import Feedback, Health, Status
from kiosk.feedback.console import ConsoleFeedback
from kiosk.feedback.multi import MultiFeedback
from kiosk.rules import TapKind

from .display_helpers import outcome


class Recording(Feedback):
    def __init__(self, name="recording"):
        self.name = name
        self.calls = []

    def show(self, o):
        self.calls.append(("show", o))

    def set_status(self, s):
        self.calls.append(("status", s))

    def enrolling(self, username):
        self.calls.append(("enrolling", username))

    def close(self):
        self.calls.append(("close",))


class Exploding(Recording):
    def __init__(self):
        super().__init__("exploding")
        self.broken = True

    def _maybe(self):
        if self.broken:
            raise OSError("I2C device not found on address: 0x3C")

    def show(self, o):
        self._maybe()

    def set_status(self, s):
        self._maybe()

    def enrolling(self, username):
        self._maybe()

    def close(self):
        self._maybe()


def test_every_call_reaches_every_device_even_past_a_failing_one(caplog):
    first, bad, last = Recording(), Exploding(), Recording()
    multi = MultiFeedback([first, bad, last])
    taps = [outcome(TapKind.CLOCK_IN), outcome(TapKind.CLOCK_OUT)] * 10
    for tap in taps:
        multi.show(tap)
    multi.set_status(Status(Health.FAULT, "reader not answering"))
    multi.enrolling("anna")
    multi.close()
    expected = [("show", t) for t in taps] + [("status", Status(Health.FAULT, "reader not answering")),
                                              ("enrolling", "anna"), ("close",)]
    assert first.calls == expected and last.calls == expected
    show_errors = [r for r in caplog.records if r.levelno == logging.ERROR and "show failed" in r.getMessage()]
    assert len(show_errors) == 1  # once per streak, not once per tap
    bad.broken = False
    caplog.set_level(logging.INFO)
    multi.show(taps[0])
    assert any("show works again" in r.getMessage() for r in caplog.records)


def test_health_is_combined_across_devices():
    a, b = Recording("a"), Recording("b")
    multi = MultiFeedback([a, b])
    seen = []
    multi.on_health = lambda ok, message: seen.append((ok, message))
    a.on_health(False, "a: down")
    b.on_health(False, "b: down")
    a.on_health(True, "")
    b.on_health(True, "")
    assert seen == [(False, "a: down"), (False, "a: down; b: down"), (False, "b: down"), (True, "")]


def settings(**sections):
    return config.from_dict(sections, require_api=False)


def test_create_builds_one_device_or_several():
    assert type(feedback_module.create(settings(feedback={"type": "none"}))) is Feedback
    stream = io.StringIO()
    console = feedback_module.create(settings(feedback={"type": "console"}), stream=stream)
    assert isinstance(console, ConsoleFeedback)
    combined = feedback_module.create(settings(feedback={"devices": ["console", "display"]},
                                               display={"driver": "dummy"}), stream=stream)
    try:
        assert isinstance(combined, MultiFeedback)
        assert [d.name for d in combined.devices] == ["console", "display"]
        assert combined.devices[1].kiosk_name == "kiosk"
    finally:
        combined.close()
    # devices replaces type; the old keys keep working
    assert feedback_module.kinds(settings(feedback={"type": "console", "devices": ["display"]})) == ("display",)
    assert feedback_module.kinds(config.FeedbackSettings(type="gpio")) == ("gpio",)


def test_create_closes_what_it_built_when_a_later_device_fails(monkeypatch):
    from kiosk.exc import GpioUnavailable

    closed = []

    class Console(ConsoleFeedback):
        def close(self):
            closed.append(self)

    monkeypatch.setattr("kiosk.feedback.console.ConsoleFeedback", Console)
    clash = config.FeedbackSettings(devices=("console", "gpio"), green_pin=17, red_pin=17)  # one pin, two LEDs
    with pytest.raises(GpioUnavailable):
        feedback_module.create(clash, stream=io.StringIO())
    assert len(closed) == 1


def test_console_prints_no_new_status_line_for_a_new_queue_count():
    stream = io.StringIO()
    console = ConsoleFeedback(stream=stream)
    console.set_status(Status(Health.BACKLOG, "entries waiting for delivery", queued=1))
    console.set_status(Status(Health.BACKLOG, "entries waiting for delivery", queued=2))
    assert stream.getvalue().count("STATUS") == 1


def test_nothing_imports_luma_or_pillow_unless_a_display_is_configured(tmp_path):
    code = textwrap.dedent("""
        import io, sys
        from kiosk import config, feedback, daemon, cli, doctor
        s = config.from_dict({"feedback": {"devices": ["console", "none"][:1]}}, require_api=False)
        f = feedback.create(s, stream=io.StringIO())
        from kiosk.feedback.display_check import check_display
        check_display(s)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("luma", "PIL", "pygame"))
        print(loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
