"""``kiosk demo``: the whole kiosk on any machine, no config, no hardware.

A throw-away state directory, the TimeTrack emulator on a free loopback port
(real HTTP), a few badges, the stdin reader and console feedback: the same
daemon code paths as production, with each entry shown as TimeTrack receives it.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile

import click

from kiosk import app, badges, clock, config
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


def run_demo(*, min_session_seconds: float = 5.0, debounce_seconds: float = 1.0, stdin=None,
             keep: bool = False) -> int:
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
            "rules": {"debounce_seconds": debounce_seconds, "min_session_seconds": min_session_seconds},
            "clock": {"sync_file": ""},
        })
        with Store(settings.store_path) as store:
            for uid, user, enabled, label in DEMO_BADGES:
                store.add_badge(uid, user, enabled=enabled, label=label)
        interactive = (stdin or sys.stdin).isatty()
        click.secho("kiosk demo", bold=True)
        click.echo(f"  state:     {state_dir}")
        click.echo(f"  TimeTrack: {emulator.url} (emulator)")
        click.echo(f"  rules:     a second tap after {min_session_seconds:g}s clocks out\n")
        click.echo("Demo badges (type one per line; Ctrl-D or Ctrl-C to stop):")
        for uid, user, enabled, label in DEMO_BADGES:
            click.echo(f"  {uid:<16} {user:<6} {label}")
        click.echo(f"  (USB readers type anna's badge as {badges.to_decimal('04A1B2C3')}; any other id is unknown)\n")
        daemon = app.build(settings, reader=StdinReader(stdin, prompt="badge> " if interactive else ""),
                           feedback=ConsoleFeedback(), drain_seconds=5.0)
        code = daemon.run()
        received = emulator.entries()
        click.echo(f"\n{len(received)} entr{'y' if len(received) == 1 else 'ies'} delivered to the emulator.")
        return code
    finally:
        emulator.stop()
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)
