"""``kiosk queue``: the entries waiting for TimeTrack, and the rejected ones."""

from __future__ import annotations

import sys

import click

from kiosk.cli import CliError, handle_errors, json_option, load_settings, main, open_store
from kiosk.cli.output import emit_json, local, table
from kiosk.model import OutboxEntry, RejectedEntry
from kiosk.store import Store


@main.group()
def queue() -> None:
    """The outbox of entries waiting for TimeTrack, and rejected entries."""


def _entry_row(e: OutboxEntry) -> list[str]:
    rec = e.to_record()
    row = [str(e.id), e.username, local(rec["from"]), local(rec["to"])]
    if isinstance(e, RejectedEntry):
        return row + [str(e.status or "-"), e.reason or ""]
    return row + [str(e.attempts), e.last_error or ("waiting for a trusted clock" if e.held else "")]


@queue.command("list")
@json_option
@click.option("--rejected", is_flag=True, help="List rejected entries instead of queued ones.")
@click.pass_context
@handle_errors
def queue_list(ctx: click.Context, as_json: bool, rejected: bool) -> None:
    """List queued (or rejected) entries: username, from, to, attempts, last error."""
    with open_store(ctx) as store:
        entries = store.rejected() if rejected else store.outbox()
    if as_json:
        emit_json([e.to_record() for e in entries])
        return
    if not entries:
        click.echo("no rejected entries" if rejected else "queue empty")
        return
    last = ["status", "reason"] if rejected else ["attempts", "last error"]
    table([_entry_row(e) for e in entries], ["id", "user", "from", "to", *last])


@queue.command("retry")
@click.argument("entry_id", type=int, required=False)
@click.option("--all-rejected", is_flag=True, help="Put every rejected entry back in the queue.")
@click.pass_context
@handle_errors
def queue_retry(ctx: click.Context, entry_id: int | None, all_rejected: bool) -> None:
    """Put rejected entry ENTRY_ID (or --all-rejected) back in the queue, e.g. after fixing the user in TimeTrack."""
    if (entry_id is None) == (not all_rejected):
        raise click.UsageError("give an entry id or --all-rejected (not both)")
    with open_store(ctx) as store:
        if all_rejected:
            done = sum(store.retry_rejected(e.id) for e in store.rejected())
        elif store.retry_rejected(entry_id):
            done = 1
        else:
            where = "is still queued" if store.outbox_entry(entry_id) else "does not exist"
            raise CliError(f"entry {entry_id} is not in the rejected list (it {where})")
    click.echo(f"{done} entr{'y' if done == 1 else 'ies'} queued again" + ("" if all_rejected else f" ({entry_id})"))


@queue.command("drop")
@click.argument("entry_id", type=int)
@click.option("--reason", default="", help="Why, for the audit log.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def queue_drop(ctx: click.Context, entry_id: int, reason: str, yes: bool) -> None:
    """Delete queued or rejected entry ENTRY_ID for good (a copy stays in the audit log)."""
    with open_store(ctx) as store:
        entry = store.outbox_entry(entry_id) or store.rejected_entry(entry_id)
        if entry is None:
            raise CliError(f"no queued or rejected entry {entry_id}")
        rec = entry.to_record()
        summary = f"{entry.username} {local(rec['from'])} - {local(rec['to'])}"
        if not yes:
            if not sys.stdin.isatty():
                raise CliError("refusing to drop without confirmation: pass --yes")
            click.confirm(f"Drop entry {entry_id} ({summary})? It will never reach TimeTrack", abort=True)
        if store.drop(entry_id, reason=reason) is None:
            raise CliError(f"entry {entry_id} left the queue meanwhile (delivered?); nothing dropped")
    click.echo(f"dropped entry {entry_id} ({summary})")


@queue.command("flush")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_context
@handle_errors
def queue_flush(ctx: click.Context, as_json: bool) -> None:
    """Deliver the queue now (safe while the daemon runs: one of them sends at a time)."""
    from kiosk.delivery.sender import Sender

    settings = load_settings(ctx, require_api=True)
    with Store(settings.store_path, create=False) as store:
        total = store.outbox_count()
        sender = Sender(store, settings.api)
        if sys.stderr.isatty() and not as_json and total > 0:
            with click.progressbar(length=total, label="delivering", file=sys.stderr) as bar:
                summary = sender.flush(lambda entry, result: bar.update(1))
        else:
            summary = sender.flush()
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"delivered {summary['delivered']}, rejected {summary['rejected']}, "
                   f"failed {summary['failed']}, still queued {summary['remaining']}"
                   + (f" (held until the clock syncs: {summary['held']})" if summary.get("held") else ""))
        if summary.get("error"):
            click.echo(f"stopped: {summary['state']}: {summary['error']}", err=True)
    if summary["remaining"] and summary.get("error"):
        sys.exit(1)
