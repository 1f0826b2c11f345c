"""``kiosk log``: the audit log, the local evidence for "I did clock in!" disputes.

Every tap and its outcome, and every administrator's change (who ran it,
from ``SUDO_USER``/``LOGNAME``, and what changed). Lines older than
``kiosk.history_days`` are pruned by the daemon. The newest ``--limit`` lines
that match are read newest first, a page at a time, and printed oldest first.
"""

from __future__ import annotations

import json
from typing import Any

import click

from kiosk import badges
from kiosk.cli import handle_errors, json_option, load_settings, main, read_store
from kiosk.cli.output import Columns, emit_json_stream, local
from kiosk.cli.params import LIMIT, TIME

LOG_LIMIT = 100
# Fields shown in the "what" column, in this order; the rest follow (copies of records are left to --json).
LEAD = ("uid", "username", "entry", "by")
HIDDEN = {"id", "at", "kind", "copy", "replaced"}


def _what(fields: dict[str, Any]) -> str:
    parts = []
    for name in (*LEAD, *sorted(set(fields) - set(LEAD))):
        if name in HIDDEN or name not in fields or fields[name] in (None, "", [], {}):
            continue
        value = fields[name]
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        parts.append(f"{name}={shown}")
    if "copy" in fields:
        parts.append("(copy kept: --json)")
    return " ".join(parts)


@main.command("log")
@click.option("--user", help="Only lines about this username.")
@click.option("--badge", "badge_id", metavar="UID", help="Only lines about this badge (any spelling).")
@click.option("--since", type=TIME, help="From this time (ISO 8601 with a zone).")
@click.option("--until", type=TIME, help="Up to this time (ISO 8601 with a zone).")
@click.option("--limit", type=LIMIT, default=str(LOG_LIMIT), show_default=True,
              help="The newest N matching lines (0: all).")
@json_option
@click.pass_context
@handle_errors
def log_command(ctx: click.Context, user: str | None, badge_id: str | None, since, until, limit: int | None,
                as_json: bool) -> None:
    """The audit log: every tap and its outcome, every admin change (who and what), oldest first.

    \b
    Example:  kiosk log --user anna --since 2026-11-30T00:00:00+01:00
    """
    settings = load_settings(ctx)
    uid = badges.parse(badge_id, settings.badges.decimal_byte_order) if badge_id else None
    if since and until and until < since:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    with read_store(ctx, settings) as store:
        if limit is not None:  # the newest N, read newest first, shown oldest first
            lines = reversed(list(store.audit_lines(user=user, badge=uid, since=since, until=until, limit=limit)))
        else:  # all of them, streamed oldest first
            lines = store.audit_lines(user=user, badge=uid, since=since, until=until, limit=None, newest_first=False)
        if as_json:
            emit_json_stream(line.to_record() for line in lines)
            return
        cols = Columns(("time", 19), ("kind", 14), ("details", 0))
        n = 0
        for line in lines:
            cols.row([local(line.to_record()["at"]), line.kind, _what(line.fields)])
            n += 1
        cols.flush()
    if n == 0:
        click.echo("no matching lines")
