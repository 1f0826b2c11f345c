"""``kiosk queue``: the entries waiting for TimeTrack, and the rejected ones."""

from __future__ import annotations

import itertools
import sys

import click

from kiosk import text
from kiosk.cli import CliError, handle_errors, json_option, load_settings, main, open_store, read_store
from kiosk.cli.output import Columns, cell, emit_json, emit_json_stream, local
from kiosk.cli.params import LIMIT, TIME
from kiosk.store import Store

LIST_LIMIT = 100


@main.group()
def queue() -> None:
    """The outbox of entries waiting for TimeTrack, and rejected entries."""


def _entry_row(rec: dict, rejected: bool) -> list[str]:
    """A table row from a stored entry record (see :class:`~kiosk.model.OutboxEntry` for the fields)."""
    row = [str(rec.get("id")), rec.get("username", ""), local(rec.get("from")), local(rec.get("to"))]
    if rejected:
        return row + [str(rec.get("status") or "-"), rec.get("reason") or ""]
    held = rec.get("from_unsynced") or rec.get("to_unsynced")
    return row + [str(rec.get("attempts", 0)), rec.get("last_error") or ("waiting for a trusted clock" if held else "")]


@queue.command("list")
@json_option
@click.option("--rejected", is_flag=True, help="List rejected entries instead of queued ones.")
@click.option("--limit", type=LIMIT, default=str(LIST_LIMIT), show_default=True,
              help="Show at most N entries, oldest first (0: all, streamed in constant memory).")
@click.pass_context
@handle_errors
def queue_list(ctx: click.Context, as_json: bool, rejected: bool, limit: int | None) -> None:
    """List queued (or rejected) entries: username, from, to, attempts, last error (or the server's reason)."""
    with read_store(ctx) as store:
        total = store.rejected_count() if rejected else store.outbox_count()
        entries = itertools.islice(store.iter_rejected_records() if rejected else store.iter_outbox_records(), limit)
        if as_json:
            emit_json_stream(entries)
            return
        last = [("status", 6), ("reason", 0)] if rejected else [("attempts", 8), ("last error", 0)]
        cols = Columns(("id", 8), ("user", 20), ("from", 19), ("to", 19), *last)
        shown = 0
        for e in entries:
            if shown == 0:
                cols.header()
            cols.row(_entry_row(e, rejected))
            shown += 1
        cols.flush()
    if shown == 0:
        click.echo("no rejected entries" if rejected else "queue empty")
    elif total > shown:
        click.echo(f"({shown} of {total} shown; --limit 0 shows all)", err=True)


@queue.command("edit")
@click.argument("entry_id", type=int)
@click.option("--username", help="The corrected TimeTrack username.")
@click.option("--from", "start", type=TIME, help="The corrected start (ISO 8601 with a zone).")
@click.option("--to", "end", type=TIME, help="The corrected end (ISO 8601 with a zone).")
@click.option("--retry", is_flag=True, help="Queue it again at once (else: kiosk queue retry ID).")
@json_option
@click.pass_context
@handle_errors
def queue_edit(ctx: click.Context, entry_id: int, username: str | None, start, end, retry: bool,
               as_json: bool) -> None:
    """Correct rejected entry ENTRY_ID (username, from, to) before sending it again.

    \b
    Example:  kiosk queue edit 42 --username anna --retry
    """
    if username is None and start is None and end is None:
        raise click.UsageError("give --username, --from and/or --to")
    if username is not None:
        username = text.clean_name(username, "username")
    with open_store(ctx) as store:
        old, new = store.edit_rejected(entry_id, username=username, start=start, end=end)
        retried = retry and store.retry_rejected(entry_id)
        if retried:
            store.nudge()
    if as_json:
        emit_json({**new.to_record(), "retried": bool(retried)})
        return
    if old == new:
        click.echo(f"entry {entry_id}: nothing changed")
    else:
        click.echo(f"entry {entry_id}: {cell(new.username)} {local(new.to_record()['from'])} - "
                   f"{local(new.to_record()['to'])} (was {cell(old.username)} {local(old.to_record()['from'])} - "
                   f"{local(old.to_record()['to'])})")
    click.echo("queued again" if retried else f"still rejected: kiosk queue retry {entry_id} sends it again")


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
            done = sum(store.retry_rejected(e.id) for e in list(store.iter_rejected()))
        elif store.retry_rejected(entry_id):
            done = 1
        else:
            where = "is still queued" if store.outbox_entry(entry_id) else "does not exist"
            raise CliError(f"entry {entry_id} is not in the rejected list (it {where})")
        if done:
            store.nudge()
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
        summary = f"{cell(entry.username)} {local(rec['from'])} - {local(rec['to'])}"
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
