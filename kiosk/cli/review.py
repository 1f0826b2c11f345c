"""``kiosk open`` and ``kiosk flagged``: clock-ins still open, and records set aside for review.

A forgotten clock-out is closed with an explicit time (``open close --at``),
never an invented one; a flagged record is resolved with the times a person
confirmed (``flagged resolve --to``), or discarded. Times must lie after the
start and not in the future.
"""

from __future__ import annotations

import sys

import click

from kiosk.cli import CliError, handle_errors, json_option, load_settings, main, open_store, read_store
from kiosk.cli.output import Columns, age, cell, emit_json, emit_json_stream, local
from kiosk.cli.params import TIME
from kiosk.model import to_iso


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError("refusing without confirmation: pass --yes")
    click.confirm(question, abort=True)


def _iso(dt) -> str:
    return local(to_iso(dt))


# ---------------------------------------------------------------- open clock-ins


@main.group("open")
def open_group() -> None:
    """Clock-ins not yet closed: list them, close a forgotten one, cancel a mistaken one."""


@open_group.command("list")
@json_option
@click.pass_context
@handle_errors
def open_list(ctx: click.Context, as_json: bool) -> None:
    """Everyone clocked in now: user, badge, since, for how long."""
    with read_store(ctx) as store:
        rows = store.open_clock_ins()
    if as_json:
        emit_json([o.to_record() for o in rows])
        return
    if not rows:
        click.echo("nobody is clocked in")
        return
    cols = Columns(("user", 24), ("badge", 20), ("since", 19), ("for", 8), ("note", 0))
    cols.header()
    for o in rows:
        rec = o.to_record()
        cols.row([o.username, o.uid, local(rec["since"]), age(rec["since"]),
                  "" if o.synced else "stamped before the clock was trusted"])
    cols.flush()


@open_group.command("close")
@click.argument("username")
@click.option("--at", "end", type=TIME, required=True,
              help="The clock-out time, ISO 8601 with a zone: 2026-11-30T17:05:00Z or 2026-11-30T18:05:00+01:00.")
@json_option
@click.pass_context
@handle_errors
def open_close(ctx: click.Context, username: str, end, as_json: bool) -> None:
    """Close USERNAME's open clock-in at an explicit time (a forgotten clock-out) and queue the entry.

    \b
    Example:  kiosk open close anna --at 2026-11-30T17:05:00+01:00
    """
    settings = load_settings(ctx)
    with open_store(ctx, settings=settings) as store:
        opened = store.open_clock_in(username)
        if opened is None:
            raise CliError(f"{cell(username)} has no open clock-in (kiosk open list shows who has)")
        name = settings.kiosk.name
        entry = store.close_open(username, end, notes=f"kiosk: {name}", kiosk=name, expect_since=opened.since)
        store.nudge()
    if as_json:
        emit_json(entry.to_record())
        return
    click.echo(f"queued entry {entry.id}: {cell(username)} {_iso(entry.start)} - {_iso(entry.end)}")


@open_group.command("cancel")
@click.argument("username")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def open_cancel(ctx: click.Context, username: str, yes: bool) -> None:
    """Delete USERNAME's open clock-in without an entry (a copy stays in the audit log)."""
    with open_store(ctx) as store:
        opened = store.open_clock_in(username)
        if opened is None:
            raise CliError(f"{cell(username)} has no open clock-in (kiosk open list shows who has)")
        _confirm(yes, f"Cancel the clock-in of {cell(username)} since {_iso(opened.since)}? No entry will be sent")
        store.cancel_open(username)
    click.echo(f"cancelled the clock-in of {cell(username)} since {_iso(opened.since)}")


# ---------------------------------------------------------------- flagged


@main.group()
def flagged() -> None:
    """Records set aside for review: stale clock-ins, entries with unknowable or implausible times."""


def _flag_record(f) -> dict:
    from kiosk.store.review import ReviewRecords

    start, end = ReviewRecords.flagged_times(f)
    return {**f.to_record(), "username": f.username, "from": to_iso(start) if start else None,
            "to": to_iso(end) if end else None}


@flagged.command("list")
@json_option
@click.pass_context
@handle_errors
def flagged_list(ctx: click.Context, as_json: bool) -> None:
    """Flagged records: id, user, what it was, its trusted times, why it was flagged."""
    with read_store(ctx) as store:
        if as_json:
            emit_json_stream(_flag_record(f) for f in store.iter_flagged())
            return
        cols = Columns(("id", 8), ("user", 20), ("was", 9), ("from", 19), ("to", 19), ("reason", 0))
        n = 0
        for f in store.iter_flagged():
            if n == 0:
                cols.header()
            rec = _flag_record(f)
            cols.row([f.id, f.username, "clock-in" if f.was == "open" else "entry",
                      local(rec["from"]) if rec["from"] else "unknown", local(rec["to"]) if rec["to"] else "-",
                      f.reason])
            n += 1
        cols.flush()
    if n == 0:
        click.echo("nothing flagged")
    else:
        click.echo("resolve with: kiosk flagged resolve ID --to TIME [--from TIME], or --discard", err=True)


@flagged.command("resolve")
@click.argument("flag_id", type=int)
@click.option("--to", "end", type=TIME, help="The confirmed end (ISO 8601 with a zone); queues the entry.")
@click.option("--from", "start", type=TIME, help="The confirmed start, when the recorded one is unknown or wrong.")
@click.option("--discard", is_flag=True, help="Delete it instead (a copy stays in the audit log).")
@click.option("--reason", default="", help="Why it was discarded, for the audit log.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before discarding.")
@json_option
@click.pass_context
@handle_errors
def flagged_resolve(ctx: click.Context, flag_id: int, end, start, discard: bool, reason: str, yes: bool,
                    as_json: bool) -> None:
    """Resolve flagged record FLAG_ID: queue it with confirmed times (--to), or --discard it.

    \b
    Example:  kiosk flagged resolve 17 --to 2026-11-30T17:05:00Z
    """
    if discard == (end is not None):
        raise click.UsageError("give --to TIME (and perhaps --from TIME), or --discard")
    if discard and start is not None:
        raise click.UsageError("--from goes with --to, not with --discard")
    settings = load_settings(ctx)
    with open_store(ctx, settings=settings) as store:
        flag = store.flagged_entry(flag_id)
        if flag is None:
            raise CliError(f"no flagged record {flag_id} (kiosk flagged list shows them)")
        if discard:
            _confirm(yes, f"Discard flagged record {flag_id} of {cell(flag.username)}? It will never reach TimeTrack")
            store.discard_flagged(flag_id, reason=reason)
            if as_json:
                emit_json({"discarded": flag_id})
            else:
                click.echo(f"discarded flagged record {flag_id} ({cell(flag.username)})")
            return
        name = settings.kiosk.name
        entry = store.resolve_flagged(flag_id, end=end, start=start, notes=f"kiosk: {name}", kiosk=name)
        store.nudge()
    if as_json:
        emit_json(entry.to_record())
        return
    click.echo(f"queued entry {entry.id}: {cell(entry.username)} {_iso(entry.start)} - {_iso(entry.end)}")
