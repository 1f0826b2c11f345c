"""``kiosk demo``: the whole kiosk on any machine, no config, no hardware.

A throw-away state directory, the TimeTrack emulator on a free loopback port
(real HTTP), a few badges, the stdin reader and console feedback: the same
daemon code paths as production, with each entry shown as TimeTrack receives it.

``display_png`` adds the door display (128x64, as an SSD1306 shows it), each
picture written to that directory as a numbered PNG; ``display_window`` shows it
in a desktop window (luma's pygame emulator). Both need ``kiosk[display]``.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile

import click

from kiosk import app, badges, clock, config
from kiosk.exc import Cause, DisplayUnavailable
from kiosk.sim.emulator import Emulator
from kiosk.feedback.console import ConsoleFeedback
from kiosk.readers.stdin import StdinReader
from kiosk.store import Store

DEMO_BADGES = [
    ("04A1B2C3", "anna", True, "4-byte MIFARE Classic"),
    ("04D5E6F7A8B9C0", "ben", True, "7-byte NTAG"),
    ("1A2B3C4D", "carla", False, "disabled badge"),
]


def _received(entry: dict) -> None:
    user = entry.get("user") or entry.get("username")
    start, end = (clock.from_api(entry[k]).astimezone().strftime("%H:%M:%S") for k in ("from", "to"))
    click.secho(f"  -> TimeTrack received entry #{entry.get('ID')}: {user} {start} - {end}", fg="blue")


def _feedback(settings, display_png: str | None, display_window: bool):
    """Console feedback, plus the door display as PNG files and/or a window; raises DisplayUnavailable."""
    parts: list = [ConsoleFeedback()]
    if display_png or display_window:
        from kiosk.feedback import capture
        from kiosk.feedback.multi import MultiFeedback

        try:
            from kiosk.feedback.display import DisplayFeedback, logical_size
        except ImportError as exc:  # Pillow
            raise DisplayUnavailable(f"{exc.name} is not installed (the kiosk[display] extra: "
                                     "pip install -e '.[display]' in a checkout)", Cause.MISSING_PACKAGE) from None

        size = logical_size(settings.display)
        devices = []
        try:
            if display_png:
                devices.append(capture.png_device(display_png, size))
            if display_window:
                devices.append(capture.window_device(size))
        except BaseException:
            for device in devices:
                device.cleanup()
            raise
        parts += [DisplayFeedback(settings.display, kiosk_name=settings.kiosk.name, device=d) for d in devices]
        return MultiFeedback(parts)
    return parts[0]


def run_demo(*, min_session_seconds: float = 5.0, debounce_seconds: float = 1.0, stdin=None,
             keep: bool = False, display_png: str | None = None, display_window: bool = False) -> int:
    state_dir = tempfile.mkdtemp(prefix="kiosk-demo-")
    key, secret = "demo-key", secrets.token_urlsafe(24)
    emulator = Emulator(key=key, secret=secret)
    emulator.on_create = _received
    emulator.start()
    try:
        settings = config.from_dict({
            "kiosk": {"name": "demo", "state_dir": state_dir},
            "api": {"base_url": emulator.url, "key": key, "secret": secret,
                    "backoff_initial": 0.5, "backoff_max": 10.0, "probe_interval": 1.0},
            "reader": {"type": "stdin"},
            "feedback": {"type": "console"},
            "display": {"driver": "dummy"},
            "rules": {"debounce_seconds": debounce_seconds, "min_session_seconds": min_session_seconds},
            "clock": {"sync_file": ""},
        })
        feedback = _feedback(settings, display_png, display_window)
        with Store(settings.store_path) as store:
            for uid, user, enabled, label in DEMO_BADGES:
                store.add_badge(uid, user, enabled=enabled, label=label)
        interactive = (stdin or sys.stdin).isatty()
        click.secho("kiosk demo", bold=True)
        click.echo(f"  state:     {state_dir}")
        click.echo(f"  TimeTrack: {emulator.url} (emulator)")
        click.echo(f"  rules:     a second tap after {min_session_seconds:g}s clocks out")
        if display_png:
            click.echo(f"  display:   each picture as a numbered PNG in {display_png}")
        if display_window:
            click.echo("  display:   in a window (close it to stop drawing)")
        click.echo()
        click.echo("Demo badges (type one per line; Ctrl-D or Ctrl-C to stop):")
        for uid, user, enabled, label in DEMO_BADGES:
            click.echo(f"  {uid:<16} {user:<6} {label}")
        click.echo(f"  (USB readers type anna's badge as {badges.to_decimal('04A1B2C3')}; any other id is unknown)\n")
        daemon = app.build(settings, reader=StdinReader(stdin, prompt="badge> " if interactive else ""),
                           feedback=feedback, drain_seconds=5.0)
        code = daemon.run()
        received = emulator.entries()
        click.echo(f"\n{len(received)} entr{'y' if len(received) == 1 else 'ies'} delivered to the emulator.")
        return code
    finally:
        emulator.stop()
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)
