"""``kiosk status``: what the kiosk is doing, for a person or a script."""

from __future__ import annotations

import click

from kiosk.cli import handle_errors, json_option, main, read_store
from kiosk.cli.output import age, cell, daemon_line, emit_json, local, table
from kiosk.store import EmptyStore


@main.command()
@json_option
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Open clock-ins, the delivery queue, rejected and flagged counts, last delivery and error."""
    with read_store(ctx) as store:
        summary = store.summary()
        missing = isinstance(store, EmptyStore)
    if as_json:
        emit_json(summary)
        return
    if missing:
        click.echo(f"store:          none yet at {store.path} (the daemon or the first badge add creates it)")
    daemon = summary["daemon"]
    click.echo(f"daemon:         {daemon_line(daemon)}")
    sender = summary["sender"] or {}
    state = cell(sender.get("state", "unknown"))
    click.echo(f"sender:         {state if daemon['running'] else 'not running' + (f' (last: {state})' if sender else '')}")
    reader = summary["reader"]
    if reader:
        click.echo(f"reader:         {'ok' if reader.get('ok') else 'DOWN: ' + cell(reader.get('message', ''), 200)}")
    shown = summary.get("feedback")
    if shown:
        click.echo(f"feedback:       {'ok' if shown.get('ok') else 'FAILING: ' + cell(shown.get('message', ''), 200)}")
    click.echo(f"queued:         {summary['outbox']}"
               + (f" (oldest {age(summary['oldest_queued_at'])} old)" if summary["outbox"] else "")
               + (f", {summary['held']} waiting for a trusted clock" if summary.get("held") else ""))
    click.echo(f"rejected:       {summary['rejected']}")
    click.echo(f"flagged:        {summary['flagged']}")
    last = summary["last_delivery"]
    click.echo(f"last delivery:  {local(last['at']) + ' (' + age(last['at']) + ' ago)' if last else '-'}")
    err = summary["last_error"]
    click.echo(f"last error:     {(local(err.get('at')) + ' ' + cell(err.get('message', ''), 300)) if err else '-'}")
    click.echo(f"open clock-ins: {len(summary['open'])}")
    table([[o["username"], local(o["since"]), age(o["since"])] for o in summary["open"]],
          ["  user", "since", "for"])
