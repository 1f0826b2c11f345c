"""``kiosk badge``: badge to TimeTrack username mappings, one at a time or from a file.

Every change is one store transaction with its audit line (who, what changed),
safe while the daemon runs. Names go through :func:`kiosk.text.clean_name`;
everything printed goes through :func:`kiosk.text.escape`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from kiosk import badgefile, badges, files, text
from kiosk.cli import CliError, handle_errors, json_option, load_settings, main, open_store, read_store
from kiosk.cli.output import Columns, cell, emit_json, emit_json_stream, local
from kiosk.exc import BadgeIdError
from kiosk.model import Badge
from kiosk.store import EmptyStore


@main.group()
def badge() -> None:
    """Badge to TimeTrack username mappings."""


def _uid(settings, raw: str) -> str:
    return badges.parse(raw, settings.badges.decimal_byte_order)


def _describe(b: Badge) -> str:
    """``04A1B2C3 -> anna (label 'blue', disabled)``, escaped."""
    extras = [f"label '{cell(b.label, 40)}'"] if b.label else []
    if not b.enabled:
        extras.append("disabled")
    return f"{b.uid} -> {cell(b.username, 60)}" + (f" ({', '.join(extras)})" if extras else "")


def _looks_like_uid(name: str) -> bool:
    """A username written as the kiosk writes badge ids (``04C0FFEE``, or a reader's decimal number):
    the two arguments were probably swapped. (``abbadaba`` is hex too, but nobody prints ids that way.)"""
    try:
        canonical = badges.parse(name)
    except (BadgeIdError, ValueError):
        return False
    return canonical == name or name.isascii() and name.isdigit()


def _offer_fix_rejected(store, uid: str, old_username: str, new_username: str, fix: bool | None) -> None:
    """After a mapping's username changed: offer to correct that badge's rejected entries and resend them."""
    entries = store.rejected_of_badge(uid, old_username)
    if not entries:
        return
    n = len(entries)
    what = f"{n} rejected entr{'y' if n == 1 else 'ies'} of badge {uid} went out as '{cell(old_username, 40)}'"
    if fix is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            fix = click.confirm(f"{what}. Change {'it' if n == 1 else 'them'} to '{cell(new_username, 40)}' "
                                "and queue again?", default=True)
        else:
            click.echo(f"{what}; to resend them as '{cell(new_username, 40)}', run this again with --fix-rejected, "
                       f"or: kiosk queue edit ID --username ... --retry")
            return
    if not fix:
        return
    for e in entries:
        store.edit_rejected(e.id, username=new_username)
        store.retry_rejected(e.id)
    store.nudge()
    click.echo(f"{n} rejected entr{'y' if n == 1 else 'ies'} changed to '{cell(new_username, 40)}' and queued "
               f"again: {', '.join(str(e.id) for e in entries[:20])}{' ...' if n > 20 else ''}")


fix_option = click.option("--fix-rejected/--no-fix-rejected", "fix_rejected", default=None,
                          help="If the username changes, correct this badge's rejected entries and queue them again "
                               "(default: ask on a terminal).")


@badge.command("add")
@click.argument("uid")
@click.argument("username")
@click.option("--label", default="", help="Free text, e.g. the card's printed number.")
@click.option("--disabled", is_flag=True, help="Add the badge disabled.")
@click.option("--replace", is_flag=True, help="Replace an existing mapping of this badge (the output says which).")
@click.option("--force", is_flag=True, help="Accept a username that looks like a badge id.")
@fix_option
@click.pass_context
@handle_errors
def badge_add(ctx: click.Context, uid: str, username: str, label: str, disabled: bool, replace: bool, force: bool,
              fix_rejected: bool | None) -> None:
    """Map badge UID (hex, or a reader's decimal number) to a TimeTrack USERNAME.

    \b
    Example:  kiosk badge add 04A1B2C3 anna --label "blue lanyard"
    """
    settings = load_settings(ctx)
    canonical = _uid(settings, uid)
    username = text.clean_name(username, "username")
    label = text.clean_name(label, "label", empty_ok=True)
    if _looks_like_uid(username) and not force:
        raise CliError(f"the username '{cell(username, 40)}' looks like a badge id: were the arguments swapped? "
                       "(kiosk badge add UID USERNAME; --force if it really is the username)")
    with open_store(ctx, create=True, settings=settings) as store:
        new, old = store.map_badge(canonical, username, label=label, enabled=not disabled, replace=replace)
        click.echo(f"badge {_describe(new)}" + (f" (replaced: {_describe(old)})" if old else ""))
        if old and old.username != username:
            _offer_fix_rejected(store, canonical, old.username, username, fix_rejected)


@badge.command("remove")
@click.argument("uid")
@click.pass_context
@handle_errors
def badge_remove(ctx: click.Context, uid: str) -> None:
    """Delete the mapping of badge UID (its taps stay in the audit log)."""
    settings = load_settings(ctx)
    canonical = _uid(settings, uid)
    with open_store(ctx, settings=settings) as store:
        old = store.remove_badge(canonical)
    click.echo(f"removed badge {_describe(old)}")


def _set_enabled(ctx: click.Context, uid: str, enabled: bool) -> None:
    settings = load_settings(ctx)
    canonical = _uid(settings, uid)
    with open_store(ctx, settings=settings) as store:
        b, changed = store.set_badge_enabled(canonical, enabled)
    state = "enabled" if enabled else "disabled"
    click.echo(f"badge {b.uid} ({cell(b.username, 60)}) {state}" + ("" if changed else " already; nothing changed"))


@badge.command("disable")
@click.argument("uid")
@click.pass_context
@handle_errors
def badge_disable(ctx: click.Context, uid: str) -> None:
    """Disable badge UID: its taps answer DISABLED (the mapping, label and added time stay)."""
    _set_enabled(ctx, uid, False)


@badge.command("enable")
@click.argument("uid")
@click.pass_context
@handle_errors
def badge_enable(ctx: click.Context, uid: str) -> None:
    """Enable badge UID again."""
    _set_enabled(ctx, uid, True)


@badge.command("update")
@click.argument("uid")
@click.option("--username", help="The new TimeTrack username.")
@click.option("--label", help='The new label ("" clears it).')
@fix_option
@click.pass_context
@handle_errors
def badge_update(ctx: click.Context, uid: str, username: str | None, label: str | None,
                 fix_rejected: bool | None) -> None:
    """Change the username or label of badge UID (enabled state and added time stay).

    \b
    Example:  kiosk badge update 04A1B2C3 --username anna.berg
    """
    if username is None and label is None:
        raise click.UsageError("give --username and/or --label")
    settings = load_settings(ctx)
    canonical = _uid(settings, uid)
    username = None if username is None else text.clean_name(username, "username")
    label = None if label is None else text.clean_name(label, "label", empty_ok=True)
    with open_store(ctx, settings=settings) as store:
        old, new = store.update_badge(canonical, username=username, label=label)
        if old == new and old.updated_at == new.updated_at:
            click.echo(f"badge {_describe(new)}: nothing changed")
            return
        click.echo(f"badge {_describe(new)} (was: {_describe(old)})")
        if old.username != new.username:
            _offer_fix_rejected(store, canonical, old.username, new.username, fix_rejected)


@badge.command("show")
@click.argument("uid")
@json_option
@click.pass_context
@handle_errors
def badge_show(ctx: click.Context, uid: str, as_json: bool) -> None:
    """One badge: its mapping, its user's open clock-in, its rejected entries and its last taps."""
    settings = load_settings(ctx)
    canonical = _uid(settings, uid)
    with read_store(ctx, settings) as store:
        b = store.badge(canonical)
        if b is None:
            raise CliError(f"no badge {canonical} (kiosk badge list shows the mapped ones)")
        opened = store.open_clock_in(b.username)
        rejected = store.rejected_of_badge(canonical)
        taps = list(store.audit_lines(badge=canonical, limit=5))
    if as_json:
        emit_json({**b.to_record(), "open_clock_in": opened.to_record() if opened else None,
                   "rejected": [e.id for e in rejected], "last_taps": [t.to_record() for t in taps]})
        return
    click.echo(f"badge:      {b.uid}")
    click.echo(f"username:   {cell(b.username)}")
    click.echo(f"label:      {cell(b.label) or '-'}")
    click.echo(f"enabled:    {'yes' if b.enabled else 'no'}")
    click.echo(f"added:      {local(b.to_record()['added_at'])}")
    click.echo(f"updated:    {local(b.to_record()['updated_at'])}")
    click.echo(f"clocked in: {'since ' + local(opened.to_record()['since']) if opened else 'no'}")
    click.echo(f"rejected:   {', '.join(str(e.id) for e in rejected) or 'none'}")
    click.echo("last taps:  " + ("none" if not taps else ""))
    for t in taps:
        click.echo(f"  {local(t.to_record()['at'])}  {cell(t.kind, 20)}")


@badge.command("list")
@json_option
@click.pass_context
@handle_errors
def badge_list(ctx: click.Context, as_json: bool) -> None:
    """List badge mappings: uid, username, label, enabled, added (streamed: any number of badges)."""
    with read_store(ctx) as store:
        if as_json:
            emit_json_stream({"uid": b.uid, "username": b.username, "label": b.label, "enabled": b.enabled,
                              "added_at": b.to_record()["added_at"]} for b in store.iter_badges())
            return
        cols = Columns(("uid", 20), ("user", 24), ("enabled", 7), ("added", 19), ("label", 0))
        n = 0
        for b in store.iter_badges():
            if n == 0:
                cols.header()
            cols.row([b.uid, b.username, "yes" if b.enabled else "no", local(b.to_record()["added_at"]), b.label])
            n += 1
        cols.flush()
        if n == 0:
            click.echo("no badges" + (" (no store yet)" if isinstance(store, EmptyStore) else ""))


@badge.command("export")
@click.argument("file", required=False, default="-", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: the format badge import reads; json: every field.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.pass_context
@handle_errors
def badge_export(ctx: click.Context, file: str, fmt: str, force: bool) -> None:
    """Write every mapping to FILE (default: standard output), e.g. to import on another kiosk.

    \b
    Example:  kiosk badge export badges.csv && kiosk badge import --prune badges.csv   (on another kiosk)
    """
    write = badgefile.write_csv if fmt == "csv" else badgefile.write_json
    with read_store(ctx) as store:
        if file == "-":
            write(store.iter_badges(), click.get_text_stream("stdout"))
            return
        dest = Path(file)
        if dest.exists() and not force:
            raise CliError(f"{file} exists: choose another name, or --force to replace it")
        with files.replaced(dest, mode=0o640, newline="") as fh:
            n = write(store.iter_badges(), fh)
    click.echo(f"exported {n} badge{'s' if n != 1 else ''} to {text.escape(file)}", err=True)


@badge.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--dry-run", is_flag=True, help="Check the file and show what would change; change nothing.")
@click.option("--prune", is_flag=True, help="Remove the mappings that the file does not name (the file is the truth).")
@click.option("--replace", is_flag=True, help="Allow rows that map a badge to someone other than the store does.")
@json_option
@click.pass_context
@handle_errors
def badge_import(ctx: click.Context, file: str, dry_run: bool, prune: bool, replace: bool, as_json: bool) -> None:
    """Import mappings from CSV FILE (- for standard input): uid,username[,label,enabled], with a header.

    Every row is checked first; one bad row and nothing changes (each bad line
    is listed with its number and reason). Importing the same file again changes
    nothing.

    \b
    Example:  kiosk badge import --dry-run --prune staff.csv
    """
    settings = load_settings(ctx)
    show_bar = sys.stderr.isatty() and not as_json
    stream = click.get_binary_stream("stdin") if file == "-" else None
    try:
        fh = stream or open(file, "rb")  # decoded line by line: a bad byte is reported with its line
    except OSError as exc:
        raise CliError(f"{file}: {exc.strerror}") from None
    with fh:
        total = _count_lines(file) if show_bar and stream is None else 0
        if show_bar and total:
            with click.progressbar(length=total, label="checking", file=sys.stderr) as bar:
                seen = [0]

                def progress(n: int) -> None:
                    bar.update(n - seen[0])
                    seen[0] = n

                rows = badgefile.read_csv(fh, settings.badges.decimal_byte_order, progress=progress)
        else:
            rows = badgefile.read_csv(fh, settings.badges.decimal_byte_order)
    source = "stdin" if file == "-" else os.path.abspath(file)
    with open_store(ctx, create=not dry_run, settings=settings) if not dry_run else read_store(ctx, settings) as store:
        if isinstance(store, EmptyStore):  # a dry run before the first import: all would be added
            summary = {"added": len(rows), "changed": 0, "unchanged": 0, "removed": 0, "dry_run": True}
        elif show_bar and len(rows) > 1000:
            with click.progressbar(length=len(rows), label="writing ", file=sys.stderr) as bar:
                done = [0]

                def written(n: int) -> None:
                    bar.update(n - done[0])
                    done[0] = n

                summary = store.import_badges(rows, prune=prune, replace=replace, dry_run=dry_run, source=source,
                                              progress=written).to_record()
        else:
            summary = store.import_badges(rows, prune=prune, replace=replace, dry_run=dry_run,
                                          source=source).to_record()
    if as_json:
        emit_json(summary)
        return
    verb = "would be " if dry_run else ""
    click.echo(f"{summary['added']} {verb}added, {summary['changed']} {verb}changed, {summary['unchanged']} unchanged, "
               f"{summary['removed']} {verb}removed" + (" (dry run: nothing changed)" if dry_run else ""))


def _count_lines(path: str) -> int:
    """Lines in the file, for the progress bar (a fast binary count)."""
    n = 0
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                n += block.count(b"\n")
    except OSError:
        return 0
    return n
