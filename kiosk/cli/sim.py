"""``kiosk demo`` and ``kiosk emulator``: the kiosk and TimeTrack without hardware or an account."""

from __future__ import annotations

import sys

import click

from kiosk import config
from kiosk.cli import CliError, handle_errors, main


@main.command()
@click.option("--min-session", default=5.0, show_default=True, type=float,
              help="Seconds before a second tap clocks out (the production default is 60).")
@click.option("--debounce", default=1.0, show_default=True, type=float,
              help="Seconds in which the same badge again is ignored (the production default is 3).")
@click.option("--display-png", "display_png", type=click.Path(file_okay=False), metavar="DIR",
              help="Also draw the door display: each picture as a numbered PNG in DIR (needs kiosk[display]).")
@click.option("--display", "display_window", is_flag=True,
              help="Also show the door display in a window (needs kiosk[display,emulator] and a desktop).")
@handle_errors
def demo(min_session: float, debounce: float, display_png: str | None, display_window: bool) -> None:
    """Try the kiosk with no hardware and no config: type badge ids, watch entries arrive."""
    from kiosk.demo import run_demo

    sys.exit(run_demo(min_session_seconds=min_session, debounce_seconds=debounce, display_png=display_png,
                      display_window=display_window))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free port).")
@click.option("--key", default="emulator-key", show_default=True, help="API key clients must send.")
@click.option("--secret", envvar="KIOSK_EMULATOR_SECRET", show_envvar=True,
              help="API secret clients must send (prefer the environment variable or --secret-file: "
                   "command-line arguments are visible to other users).")
@click.option("--secret-file", type=click.Path(dir_okay=False), help="Read the API secret from this file.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), help="Persist entries to this JSON file.")
@click.option("--users", help="Comma-separated known usernames; others are rejected (default: accept any).")
@click.option("--fault", "faults", multiple=True, metavar="NAME=VALUE",
              help="Fault injection, e.g. --fault error_rate=0.2 --fault latency=1.5 (see README).")
@handle_errors
def emulator(host, port, key, secret, secret_file, data_path, users, faults) -> None:
    """Run a TimeTrack attendance API emulator (demos, tests, site checks). Needs no kiosk config."""
    from kiosk.sim.emulator import Faults, serve

    if secret_file:
        secret = config.read_secret_file(secret_file, None, "--secret-file")
    if not secret:
        raise click.UsageError("give the API secret: KIOSK_EMULATOR_SECRET=..., --secret-file or --secret")
    try:
        parsed = Faults.parse(faults)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--fault") from None
    user_list = [u.strip() for u in users.split(",") if u.strip()] if users is not None else None
    try:
        serve(host, port, key=key, secret=secret, data_path=data_path, users=user_list, faults=parsed,
              echo=lambda line: click.echo(line))
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    except ValueError as error:  # an unusable --data file
        raise CliError(str(error)) from None
