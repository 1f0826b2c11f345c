"""The ``kiosk`` command: a thin click layer over the library.

Each group lives in its own module (``kiosk.cli.queue``, ``kiosk.cli.badge``,
...); this one holds the root group, the options every command shares, and
the one place where the kiosk's errors become messages and exit codes
(:func:`handle_errors`, after :mod:`kiosk.exc`): 0 ok, 1 failure, 2 usage,
69 reader or GPIO unavailable, 78 configuration error. With ``--json``, an
error is also printed on stdout as ``{"error": "..."}`` for scripts.

Commands that change state go through :class:`kiosk.store.Store`, whose
transactions make them safe to run while the daemon runs.
"""

from __future__ import annotations

import functools

import click

from kiosk import __version__, config, exc
from kiosk.cli.output import emit_json
from kiosk.store import EmptyStore, Store
from kiosk.store.admin import whoami

ERRORS_SHOWN = 50  # lines of a refused input listed on stderr (--json lists them all)


class CliError(click.ClickException):
    """A clean failure: message on stderr, no traceback, the error's exit code."""

    def __init__(self, message: str, exit_code: int = exc.EX_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"kiosk: error: {self.format_message()}", err=True)


def handle_errors(fn):
    """The one place where the kiosk's errors become messages and exit codes (see :mod:`kiosk.exc`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (exc.KioskError, CliError) as error:
            message = error.format_message() if isinstance(error, CliError) else str(error)
            if kwargs.get("as_json"):
                emit_json({"error": message, **(error.json_fields() if hasattr(error, "json_fields") else {})})
            if isinstance(error, CliError):
                raise
            if isinstance(error, exc.InputRefused):
                _show_errors(error.errors)
            raise CliError(message, error.exit_code) from None

    return wrapper


def _show_errors(errors: list[tuple[int, str]]) -> None:
    from kiosk.text import escape

    for line, reason in errors[:ERRORS_SHOWN]:
        click.echo(f"  line {line}: {escape(reason, limit=300)}", err=True)
    if len(errors) > ERRORS_SHOWN:
        click.echo(f"  ... and {len(errors) - ERRORS_SHOWN} more (--json lists them all)", err=True)


def load_settings(ctx: click.Context, *, require_api: bool = False) -> config.Settings:
    return config.load(config.resolve_path(ctx.obj["config"]), require_api=require_api)


def open_store(ctx: click.Context, *, create: bool = False, settings: config.Settings | None = None) -> Store:
    """The configured store; without ``create`` a missing one is :class:`~kiosk.exc.StoreMissing`.

    Changes made through it are audited as made by :func:`~kiosk.store.admin.whoami`.
    With ``create``, a new store is announced on stderr: a store never appears silently.
    """
    settings = settings or load_settings(ctx)
    store = Store(settings.store_path, create=create)
    store.actor = whoami()
    if store.created:
        click.echo(f"kiosk: created a new store at {store.path}", err=True)
    return store


def read_store(ctx: click.Context, settings: config.Settings | None = None) -> Store | EmptyStore:
    """The configured store for reading; before it exists (a fresh install), an empty one."""
    settings = settings or load_settings(ctx)
    try:
        return open_store(ctx, settings=settings)
    except exc.StoreMissing as missing:
        return EmptyStore(settings.store_path, missing)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", envvar=None,
              help=f"Configuration file (default: $KIOSK_CONFIG, else {config.DEFAULT_PATH}).")
@click.version_option(__version__, prog_name="kiosk")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Clock-in kiosk: RFID taps to TimeTrack attendance entries."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path


from kiosk.cli import (admin, badge, enroll, log, queue, review, run, sim,  # noqa: E402,F401 - register
                       status)
