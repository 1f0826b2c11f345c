"""``kiosk backup`` and ``kiosk restore``: a consistent copy of the store, and putting one back.

A backup is taken while the daemon runs (SQLite's online backup API); a
restore refuses while it runs, checks the backup (integrity, schema) before
touching anything, and keeps the replaced store beside the new one.
"""

from __future__ import annotations

import sys

import click

from kiosk import text
from kiosk.cli import CliError, handle_errors, json_option, load_settings, main, open_store
from kiosk.cli.output import emit_json
from kiosk.store import backup as backup_mod, presence


def _counts(counts: dict) -> str:
    return (f"{counts['badge']} badges, {counts['open']} open clock-ins, {counts['outbox'] + counts['held']} queued, "
            f"{counts['rejected']} rejected, {counts['flagged']} flagged, {counts['audit']} audit lines")


@main.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@json_option
@click.pass_context
@handle_errors
def backup_command(ctx: click.Context, file: str, force: bool, as_json: bool) -> None:
    """Copy the store to FILE, consistently, while the daemon runs (SQLite's online backup).

    The copy is checked (integrity) and private (mode 0600).

    \b
    Example:  kiosk backup /var/backups/kiosk-$(date +%F).sqlite
    """
    with open_store(ctx) as store:
        info = store.backup(file, overwrite=force)
    if as_json:
        emit_json(info)
        return
    click.echo(f"backup written to {text.escape(info['path'])}: integrity ok, schema {info['schema']}; "
               f"{_counts(info['counts'])}")


@main.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
@handle_errors
def restore_command(ctx: click.Context, file: str, yes: bool, as_json: bool) -> None:
    """Replace the store with backup FILE (the daemon must be stopped; the old store is kept beside it).

    \b
    Example:  sudo systemctl stop kiosk && sudo -u kiosk kiosk restore /var/backups/kiosk-2026-11-30.sqlite
    """
    settings = load_settings(ctx)
    info = backup_mod.inspect_backup(file)  # checked before anything else, the daemon included
    state = presence.daemon_state(settings.store_path)
    if state.running or state.alive:
        raise presence.DaemonRunning(presence.running_message(state, settings.store_path))
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to restore without confirmation: pass --yes")
        click.confirm(f"Replace the store {settings.store_path} with {text.escape(file)} "
                      f"({_counts(info['counts'])})? Taps and entries since the backup leave the store "
                      "(the old store is kept beside it)", abort=True)
    result = backup_mod.restore(file, settings.store_path)
    if as_json:
        emit_json(result)
        return
    click.echo(f"restored {text.escape(file)} into {result['store']}: {_counts(result['counts'])}")
    if result["replaced"]:
        click.echo(f"the previous store is kept as {result['replaced']}")
    click.echo("start the daemon again: sudo systemctl start kiosk", err=True)
