"""``kiosk enroll``: map the next unknown badge tapped at this kiosk to a username.

The daemon does the read (it owns the reader): this command leaves a request
in the store and waits for the daemon to honour it on the next tap of an
unknown badge (see :mod:`kiosk.store.admin`). It prints the UID and exits 0,
or, after ``--timeout`` seconds (or Ctrl-C, or SIGTERM), withdraws the request
and exits 1: no request is left behind to catch a later stranger's badge.
"""

from __future__ import annotations

import signal
import sys
import time

import click

from kiosk import text
from kiosk.cli import CliError, handle_errors, json_option, load_settings, main, open_store
from kiosk.cli.output import cell, emit_json
from kiosk.exc import DaemonNotRunning
from kiosk.store import presence

POLL_SECONDS = 0.1


class _Stop(Exception):
    """SIGTERM or SIGHUP while waiting: withdraw the request, then exit."""


@main.command()
@click.argument("username")
@click.option("--label", default="", help="Label for the new badge.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds to wait for the tap.")
@json_option
@click.pass_context
@handle_errors
def enroll(ctx: click.Context, username: str, label: str, timeout: float, as_json: bool) -> None:
    """Map the next unknown badge tapped at this kiosk to USERNAME (the daemon must be running).

    \b
    Example:  kiosk enroll anna --label "spare card"     (then tap the new badge)
    """
    settings = load_settings(ctx)
    username = text.clean_name(username, "username")
    label = text.clean_name(label, "label", empty_ok=True)
    state = presence.daemon_state(settings.store_path)
    if not state.running:
        raise DaemonNotRunning(f"the kiosk daemon is {state.state}: it reads the badge, so start it first "
                               "(sudo systemctl start kiosk)")
    with open_store(ctx, settings=settings) as store:
        request = store.request_enrolment(username, label=label, timeout=timeout)
        if not as_json:
            click.echo(f"tap the new badge for {cell(username)} at the reader (waiting {timeout:g}s, Ctrl-C to stop)",
                       err=True)
        result = _wait(store, request["id"], timeout)
    if result is None:
        raise CliError(f"no unknown badge was tapped within {timeout:g}s; nothing was enrolled")
    if as_json:
        emit_json({"uid": result["uid"], "username": result["username"], "label": label})
    else:
        click.echo(result["uid"])
        click.echo(f"badge {result['uid']} -> {cell(result['username'])}", err=True)


def _wait(store, request_id: int, timeout: float) -> dict | None:
    """The daemon's result, or None after ``timeout`` (the request then withdrawn, in one transaction)."""
    def stop(signum, frame):
        raise _Stop()

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if store.enrolment_result(request_id) is not None:  # a read: no write lock taken while waiting
                return store.end_enrolment(request_id, cancel=False)
            time.sleep(POLL_SECONDS)
        return store.end_enrolment(request_id, cancel=True)
    except (KeyboardInterrupt, _Stop):
        result = store.end_enrolment(request_id, cancel=True)
        if result is not None:
            return result
        click.echo("\ninterrupted: nothing was enrolled", err=True)
        sys.exit(130)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
