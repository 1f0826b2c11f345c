"""``kiosk status``: what the kiosk is doing, for a person or a script."""

from __future__ import annotations

import click

from kiosk.cli import handle_errors, json_option, load_settings, main, read_store
from kiosk.cli.output import age, cell, daemon_line, emit_json, local, table
from kiosk.clock import Clock
from kiosk.store import EmptyStore


def _clock(settings, recorded: dict | None, running: bool, held: int) -> tuple[dict, str]:
    """The ``clock`` object (trusted, source, skew_seconds, held) and a line for people.

    The running daemon's record (status ``clock``) knows TimeTrack's skew; without a
    running daemon, the configured source is asked here and now.
    """
    live = Clock.from_settings(settings.clock).summary()
    use = recorded if running and isinstance(recorded, dict) and "trusted" in recorded else live
    clock = {"trusted": bool(use.get("trusted")), "source": str(use.get("source", live["source"])),
             "skew_seconds": use.get("skew_seconds"), "held": held}
    return clock, str(use.get("detail") or live["detail"])


@main.command()
@json_option
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Open clock-ins, the delivery queue, rejected and flagged counts, last delivery and error, the clock."""
    settings = load_settings(ctx)
    with read_store(ctx, settings) as store:
        summary = store.summary()
        recorded = store.status_value("clock")
        missing = isinstance(store, EmptyStore)
    daemon = summary["daemon"]
    summary["clock"], clock_detail = _clock(settings, recorded, bool(daemon.get("running")), summary.get("held", 0))
    summary["clock_synced"] = summary["clock"]["trusted"]
    if as_json:
        emit_json(summary)
        return
    if missing:
        click.echo(f"store:          none yet at {store.path} (the daemon or the first badge add creates it)")
    click.echo(f"daemon:         {daemon_line(daemon)}")
    sender = summary["sender"] or {}
    state = cell(sender.get("state", "unknown"))
    if daemon["running"]:
        if sender.get("stuck_seconds"):
            state += f" (stuck in a request for {int(sender['stuck_seconds'])} s)"
        if sender.get("reason"):
            state += f": {cell(sender['reason'], 200)}"
    click.echo(f"sender:         {state if daemon['running'] else 'not running' + (f' (last: {state})' if sender else '')}")
    reader = summary["reader"]
    if reader:
        click.echo(f"reader:         {'ok' if reader.get('ok') else 'DOWN: ' + cell(reader.get('message', ''), 200)}")
    shown = summary.get("feedback")
    if shown:
        click.echo(f"feedback:       {'ok' if shown.get('ok') else 'FAILING: ' + cell(shown.get('message', ''), 200)}")
    clock = summary["clock"]
    held = f"; {clock['held']} entries wait for a trusted clock" if clock["held"] else ""
    click.echo(f"clock:          {'trusted' if clock['trusted'] else 'NOT trusted'} ({cell(clock['source'])}): "
               f"{cell(clock_detail, 300)}{held}")
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
