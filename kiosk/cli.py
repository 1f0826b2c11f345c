"""The ``kiosk`` command: a thin click layer over the library modules.

Exit codes: 0 ok, 1 failure (store, delivery), 2 usage, 69 reader or GPIO
unavailable, 78 configuration error.
Commands that change state go through :class:`kiosk.store.Store`, whose
transactions make them safe to run while the daemon runs.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
import click

from kiosk import __version__, badges, clock, config, exc
from kiosk.store import Store


class CliError(click.ClickException):
    """A clean failure: message on stderr, no traceback, the error's exit code."""

    def __init__(self, message: str, exit_code: int = exc.EX_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"kiosk: error: {self.format_message()}", err=True)


def handle_errors(fn):
    """The one place where the kiosk's errors become messages and exit codes (see :mod:`kiosk.exc`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except exc.KioskError as error:
            raise CliError(str(error), error.exit_code) from None

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


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


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
    with warnings.catch_warnings(record=True) as caught:  # gpiozero's pin-factory fallbacks
        warnings.simplefilter("always")
        daemon = Daemon(settings)  # a HardwareError exits 69 through handle_errors
    for warning in caught:
        logging.getLogger("kiosk").info("%s", warning.message)
    sys.exit(daemon.run())


# ---------------------------------------------------------------- config


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@json_option
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
@json_option
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
    shown = summary.get("feedback")
    if shown:
        click.echo(f"feedback:       {'ok' if shown.get('ok') else 'FAILING: ' + shown.get('message', '')}")
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
@json_option
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
            done = sum(store.retry_rejected(e["id"]) for e in store.rejected())
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
        entry = store.outbox_entry(entry_id) or next((e for e in store.rejected() if e["id"] == entry_id), None)
        if entry is None:
            raise CliError(f"no queued or rejected entry {entry_id}")
        summary = f"{entry['username']} {local(entry['from'])} - {local(entry['to'])}"
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
        show_bar = sys.stderr.isatty() and not as_json and total > 0
        try:
            if show_bar:
                with click.progressbar(length=total, label="delivering", file=sys.stderr) as bar:
                    summary = sender.flush(lambda entry, result: bar.update(1))
            else:
                summary = sender.flush()
        except exc.DeliveryError as error:
            raise CliError(str(error)) from None
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
        raise CliError(f"invalid username {username!r}: must be non-empty without spaces")
    with Store(settings.store_path) as store:
        store.add_badge(canonical, username, label=label, enabled=not disabled, replace=replace)
    click.echo(f"badge {canonical} -> {username}{' (disabled)' if disabled else ''}")


@badge.command("list")
@json_option
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


# ---------------------------------------------------------------- doctor


@main.command()
@json_option
@click.option("--only", multiple=True, metavar="CHECK",
              help="Run only these checks (config, spi, reader, gpio, clock, api, state, store, secret).")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, only: tuple[str, ...]) -> None:
    """Check SPI, the reader, GPIO, the clock, the API and the state dir; print a fix for each problem."""
    from kiosk import doctor as doctor_mod

    try:
        checks = doctor_mod.diagnose(ctx.obj["config"], only=only or None)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--only") from None
    click.echo(doctor_mod.render(checks, as_json))
    sys.exit(doctor_mod.exit_code(checks))


# ---------------------------------------------------------------- demo


@main.command()
@click.option("--min-session", default=5.0, show_default=True, type=float,
              help="Seconds before a second tap clocks out (the production default is 60).")
@click.option("--debounce", default=1.0, show_default=True, type=float,
              help="Seconds in which the same badge again is ignored (the production default is 3).")
@click.option("--display-png", "display_png", type=click.Path(file_okay=False), metavar="DIR",
              help="Also draw the door display: each picture as a numbered PNG in DIR (needs kiosk[display]).")
@click.option("--display", "display_window", is_flag=True,
              help="Also show the door display in a window (needs kiosk[display,emulator] and a desktop).")
@handle_errors
def demo(min_session: float, debounce: float, display_png: str | None, display_window: bool) -> None:
    """Try the kiosk with no hardware and no config: type badge ids, watch entries arrive."""
    from kiosk.demo import run_demo

    sys.exit(run_demo(min_session_seconds=min_session, debounce_seconds=debounce, display_png=display_png,
                      display_window=display_window))


# ---------------------------------------------------------------- emulator


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free port).")
@click.option("--key", default="emulator-key", show_default=True, help="API key clients must send.")
@click.option("--secret", envvar="KIOSK_EMULATOR_SECRET", show_envvar=True,
              help="API secret clients must send (prefer the environment variable or --secret-file: "
                   "command-line arguments are visible to other users).")
@click.option("--secret-file", type=click.Path(dir_okay=False), help="Read the API secret from this file.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), help="Persist entries to this JSON file.")
@click.option("--users", help="Comma-separated known usernames; others are rejected (default: accept any).")
@click.option("--fault", "faults", multiple=True, metavar="NAME=VALUE",
              help="Fault injection, e.g. --fault error_rate=0.2 --fault latency=1.5 (see README).")
@handle_errors
def emulator(host, port, key, secret, secret_file, data_path, users, faults) -> None:
    """Run a TimeTrack attendance API emulator (demos, tests, site checks). Needs no kiosk config."""
    from kiosk.sim.emulator import Faults, serve

    if secret_file:
        secret = config.read_secret_file(secret_file, None, "--secret-file")
    if not secret:
        raise click.UsageError("give the API secret: KIOSK_EMULATOR_SECRET=..., --secret-file or --secret")
    try:
        parsed = Faults.parse(faults)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--fault") from None
    user_list = [u.strip() for u in users.split(",") if u.strip()] if users is not None else None
    try:
        serve(host, port, key=key, secret=secret, data_path=data_path, users=user_list, faults=parsed,
              echo=lambda line: click.echo(line))
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    except ValueError as error:  # an unusable --data file
        raise CliError(str(error)) from None
