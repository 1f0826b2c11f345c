"""The ``kiosk`` command: a thin click layer over the library modules.

Exit codes: 0 ok, 1 failure (store, delivery), 2 usage, 78 configuration error.
Commands that change state go through :class:`kiosk.store.Store`, whose
transactions make them safe to run while the daemon runs.
"""

from __future__ import annotations

import functools
import json
import sys
import click

from kiosk import __version__, badges, clock, config
from kiosk.store import Store, StoreError


class KioskError(click.ClickException):
    """A clean failure: message on stderr, no traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"kiosk: error: {self.format_message()}", err=True)


def handle_errors(fn):
    """Turn library exceptions into clean messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except config.ConfigError as exc:
            raise KioskError(str(exc), config.EX_CONFIG) from None
        except (StoreError, badges.BadgeIdError) as exc:
            raise KioskError(str(exc)) from None

    return wrapper


def load_settings(ctx: click.Context, *, require_api: bool = False) -> config.Settings:
    return config.load(config.resolve_path(ctx.obj["config"]), require_api=require_api)


def open_store(ctx: click.Context, *, create: bool = False) -> Store:
    settings = load_settings(ctx)
    return Store(settings.store_path, create=create)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def age(iso: str | None) -> str:
    if not iso:
        return "-"
    seconds = int((clock.utcnow() - clock.from_iso(iso)).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def local(iso: str | None) -> str:
    if not iso:
        return "-"
    return clock.from_iso(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[list[str]], headers: list[str]) -> None:
    if not rows:
        return
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


# ---------------------------------------------------------------- root


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", envvar=None,
              help=f"Configuration file (default: $KIOSK_CONFIG, else {config.DEFAULT_PATH}).")
@click.version_option(__version__, prog_name="kiosk")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Clock-in kiosk: RFID taps to TimeTrack attendance entries."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path


@main.command()
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
@handle_errors
def run(ctx: click.Context, log_level: str) -> None:
    """Run the kiosk daemon (reader, feedback, sender) in the foreground."""
    settings = load_settings(ctx, require_api=True)
    from kiosk import service
    from kiosk.daemon import Daemon

    service.setup_logging(log_level)
    sys.exit(Daemon(settings).run())


# ---------------------------------------------------------------- config


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def config_check(ctx: click.Context, as_json: bool) -> None:
    """Validate the configuration and print the effective settings (secrets masked)."""
    settings = load_settings(ctx, require_api=True)
    effective = settings.masked()
    if as_json:
        emit_json({"path": settings.path, "ok": True, "settings": effective})
        return
    click.echo(f"# {settings.path}: ok")
    for section, values in effective.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {json.dumps(value)}")


# ---------------------------------------------------------------- status


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Open clock-ins, the delivery queue, rejected and flagged counts, last delivery and error."""
    with open_store(ctx) as store:
        summary = store.summary()
    if as_json:
        emit_json(summary)
        return
    sender = summary["sender"] or {}
    click.echo(f"sender:         {sender.get('state', 'unknown (daemon not running?)')}")
    reader = summary["reader"]
    if reader:
        click.echo(f"reader:         {'ok' if reader.get('ok') else 'DOWN: ' + reader.get('message', '')}")
    click.echo(f"queued:         {summary['outbox']}"
               + (f" (oldest {age(summary['oldest_queued_at'])} old)" if summary["outbox"] else ""))
    click.echo(f"rejected:       {summary['rejected']}")
    click.echo(f"flagged:        {summary['flagged']}")
    last = summary["last_delivery"]
    click.echo(f"last delivery:  {local(last['at']) + ' (' + age(last['at']) + ' ago)' if last else '-'}")
    err = summary["last_error"]
    click.echo(f"last error:     {(local(err.get('at')) + ' ' + err.get('message', '')) if err else '-'}")
    click.echo(f"open clock-ins: {len(summary['open'])}")
    table([[o["username"], local(o["since"]), age(o["since"])] for o in summary["open"]],
          ["  user", "since", "for"])


# ---------------------------------------------------------------- queue


@main.group()
def queue() -> None:
    """The outbox of entries waiting for TimeTrack, and rejected entries."""


def _entry_row(e: dict, rejected: bool) -> list[str]:
    row = [str(e["id"]), e["username"], local(e["from"]), local(e["to"])]
    if rejected:
        return row + [str(e.get("status") or "-"), e.get("reason") or ""]
    return row + [str(e.get("attempts", 0)), e.get("last_error") or ""]


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--rejected", is_flag=True, help="List rejected entries instead of queued ones.")
@click.pass_context
@handle_errors
def queue_list(ctx: click.Context, as_json: bool, rejected: bool) -> None:
    """List queued (or rejected) entries: username, from, to, attempts, last error."""
    with open_store(ctx) as store:
        entries = store.rejected() if rejected else store.outbox()
    if as_json:
        emit_json(entries)
        return
    if not entries:
        click.echo("no rejected entries" if rejected else "queue empty")
        return
    last = ["status", "reason"] if rejected else ["attempts", "last error"]
    table([_entry_row(e, rejected) for e in entries], ["id", "user", "from", "to", *last])


# ---------------------------------------------------------------- badges


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
    username = username.strip()
    if not username or any(c.isspace() for c in username):
        raise KioskError(f"invalid username {username!r}: must be non-empty without spaces")
    with Store(settings.store_path) as store:
        store.add_badge(canonical, username, label=label, enabled=not disabled, replace=replace)
    click.echo(f"badge {canonical} -> {username}{' (disabled)' if disabled else ''}")


@badge.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def badge_list(ctx: click.Context, as_json: bool) -> None:
    """List badge mappings."""
    with open_store(ctx) as store:
        rows = store.badges()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no badges")
        return
    table([[b["uid"], b["username"], "yes" if b["enabled"] else "no", b.get("label", ""), local(b["added_at"])]
           for b in rows], ["uid", "user", "enabled", "label", "added"])


# ---------------------------------------------------------------- demo


@main.command()
@click.option("--min-session", default=5.0, show_default=True, type=float,
              help="Seconds before a second tap clocks out (the production default is 60).")
@handle_errors
def demo(min_session: float) -> None:
    """Try the kiosk with no hardware and no config: type badge ids, watch entries arrive."""
    from kiosk.demo import run_demo

    sys.exit(run_demo(min_session_seconds=min_session))
