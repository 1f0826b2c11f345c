"""``kiosk run``, ``kiosk config check`` and ``kiosk doctor``: the daemon and its set-up."""

from __future__ import annotations

import json
import logging
import sys
import warnings

import click

from kiosk.cli import handle_errors, json_option, load_settings, main
from kiosk.cli.output import emit_json


@main.command()
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
@handle_errors
def run(ctx: click.Context, log_level: str) -> None:
    """Run the kiosk daemon (reader, feedback, sender) in the foreground."""
    settings = load_settings(ctx, require_api=True)
    from kiosk import app, service

    service.setup_logging(log_level)
    with warnings.catch_warnings(record=True) as caught:  # gpiozero's pin-factory fallbacks
        warnings.simplefilter("always")
        daemon = app.build(settings)  # a HardwareError exits 69 through handle_errors
    for warning in caught:
        logging.getLogger("kiosk").info("%s", warning.message)
    sys.exit(daemon.run())


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@json_option
@click.pass_context
@handle_errors
def config_check(ctx: click.Context, as_json: bool) -> None:
    """Validate the configuration and print the effective settings (secrets masked)."""
    settings = load_settings(ctx, require_api=True)
    effective = settings.masked()
    if as_json:
        emit_json({"path": settings.path, "ok": True, "settings": effective})
        return
    click.echo(f"# {settings.path}: ok")
    for section, values in effective.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {json.dumps(value)}")


@main.command()
@json_option
@click.option("--only", multiple=True, metavar="CHECK",
              help="Run only these checks (config, spi, reader, gpio, display, clock, api, state, store, secret).")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, only: tuple[str, ...]) -> None:
    """Check SPI, the reader, GPIO, the clock, the API and the state dir; print a fix for each problem."""
    from kiosk import doctor as doctor_mod

    try:
        checks = doctor_mod.diagnose(ctx.obj["config"], only=only or None)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--only") from None
    click.echo(doctor_mod.render(checks, as_json))
    sys.exit(doctor_mod.exit_code(checks))

