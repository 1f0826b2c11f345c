"""``kiosk badge``: badge to TimeTrack username mappings."""

from __future__ import annotations

import click

from kiosk import badges, text
from kiosk.cli import handle_errors, json_option, load_settings, main, open_store
from kiosk.cli.output import emit_json, local, table
from kiosk.store import Store


@main.group()
def badge() -> None:
    """Badge to TimeTrack username mappings."""


@badge.command("add")
@click.argument("uid")
@click.argument("username")
@click.option("--label", default="", help="Free text, e.g. the card's printed number.")
@click.option("--disabled", is_flag=True, help="Add the badge disabled.")
@click.option("--replace", is_flag=True, help="Replace an existing mapping of this badge.")
@click.pass_context
@handle_errors
def badge_add(ctx: click.Context, uid: str, username: str, label: str, disabled: bool, replace: bool) -> None:
    """Map badge UID (hex, or a reader's decimal number) to a TimeTrack USERNAME."""
    settings = load_settings(ctx)
    canonical = badges.parse(uid, settings.badges.decimal_byte_order)
    username = text.clean_name(username, "username")
    label = text.clean_name(label, "label", empty_ok=True)
    with Store(settings.store_path, create=True) as store:
        store.add_badge(canonical, username, label=label, enabled=not disabled, replace=replace)
    click.echo(f"badge {canonical} -> {text.escape(username)}{' (disabled)' if disabled else ''}")


@badge.command("list")
@json_option
@click.pass_context
@handle_errors
def badge_list(ctx: click.Context, as_json: bool) -> None:
    """List badge mappings."""
    with open_store(ctx) as store:
        rows = store.badges()
    if as_json:
        emit_json([b.to_record() for b in rows])
        return
    if not rows:
        click.echo("no badges")
        return
    table([[b.uid, b.username, "yes" if b.enabled else "no", b.label, local(b.to_record()["added_at"])]
           for b in rows], ["uid", "user", "enabled", "label", "added"])
