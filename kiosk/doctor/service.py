"""Doctor checks of what the kiosk talks to: the clock and the TimeTrack API.

Both decide on typed causes (:class:`kiosk.delivery.answers.Cause`) and the
clock's own summary, never on the wording of another module's messages.
"""

from __future__ import annotations

import time
from dataclasses import replace
from urllib.parse import urlsplit

from kiosk import config
from kiosk.clock import Clock, kernel_time
from kiosk.config import Settings
from kiosk.doctor import CLOCK_FIX, FAIL, OK, PING_TIMEOUT_MAX, SKIP, WARN, Check, _needs_config
from kiosk.exc import StoreError

SOURCE_FIX = ('allow the read-only adjtimex() call (SystemCallFilter=adjtimex clock_adjtime, no ProtectClock=) or set '
              'clock.source = "file"')


def _held(settings: Settings | None) -> int | None:
    """Entries waiting for a trusted clock (None: no store to ask)."""
    if settings is None:
        return None
    from kiosk.store import Store

    try:
        with Store(settings.store_path, create=False) as store:
            return store.held_count()
    except (StoreError, OSError):
        return None


def _ask_timetrack(settings: Settings | None, clock: Clock) -> None:
    """One ping, so that TimeTrack's Date header can vouch for (or against) the local clock."""
    if settings is None or not settings.api.configured or not clock.server_date:
        return
    from kiosk.delivery.client import TimeTrackClient

    try:
        with TimeTrackClient(_short(settings.api), clock=clock) as client:
            client.ping()
    except ValueError:
        pass  # the api check says what is wrong with the settings


def _short(api: config.ApiSettings) -> config.ApiSettings:
    """The API settings with waits a person at a terminal accepts."""
    return replace(api, connect_timeout=min(api.connect_timeout, PING_TIMEOUT_MAX),
                   read_timeout=min(api.read_timeout, PING_TIMEOUT_MAX),
                   request_deadline=min(api.request_deadline, PING_TIMEOUT_MAX))


# ---------------------------------------------------------------- clock


def check_clock(settings: Settings | None) -> Check:
    """Which source vouches for the clock, TimeTrack's skew, and how many entries wait for a trusted clock.

    ``data`` carries ``clock_synced`` (for metrics), ``source``, ``skew_seconds`` and ``held``.
    """
    clock = Clock.from_settings(settings.clock if settings is not None else config.ClockSettings())
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if not clock.source_synced():
        _ask_timetrack(settings, clock)
    summary = clock.summary()
    held = _held(settings)
    data = {"clock_synced": summary["trusted"], "source": summary["source"],
            "skew_seconds": summary["skew_seconds"], "held": held}
    waiting = f"; {held} entr{'y waits' if held == 1 else 'ies wait'} for a trusted clock" if held else ""
    detail = f"{summary['detail']}; system time {now}{waiting}"
    if clock.source == "none":
        return Check("clock", SKIP, f"clock.source = none: sync check disabled ({detail})", data=data)
    if summary["source"] == clock.source:
        if summary["trusted"]:
            return Check("clock", OK, detail, data=data)
        fix = SOURCE_FIX if clock.source == "kernel" and kernel_time().error else CLOCK_FIX
        return Check("clock", WARN, f"{detail}. Taps are still recorded, and corrected once the clock is trusted",
                     fix, data=data)
    # Trusted through TimeTrack's Date header only: delivery goes on, NTP is still broken.
    return Check("clock", WARN, detail, CLOCK_FIX, data=data)


# ---------------------------------------------------------------- API


def check_api(settings: Settings | None) -> Check:
    """Is TimeTrack reachable, does it accept the credentials, and is it TimeTrack at all?"""
    if settings is None:
        return _needs_config("api")
    api = settings.api
    present = {"api.base_url": api.base_url, "api.key": api.key, "secret": api.secret}
    if not any(present.values()):
        return Check("api", SKIP, "api not configured (kiosk run needs api.base_url, api.key and a secret)")
    missing = [k for k, v in present.items() if not v]
    if missing:
        return Check("api", FAIL, f"api partly configured: {', '.join(missing)} missing",
                     f"set {', '.join(missing)} (the secret: api.secret_file or the systemd credential "
                     f"{config.CREDENTIAL_NAME!r})")
    from kiosk.delivery.answers import Cause, SendOutcome
    from kiosk.delivery.client import TimeTrackClient

    api = _short(api)
    try:
        client = TimeTrackClient(api)
    except ValueError as exc:
        return Check("api", FAIL, str(exc), "correct api.base_url")
    url = client.base_url
    host = urlsplit(url).hostname or url
    try:
        started = time.monotonic()
        result = client.ping()
        elapsed = (time.monotonic() - started) * 1000
    finally:
        client.close()
    message, cause, status = result.message, result.cause, result.status
    if result.outcome is SendOutcome.OK:
        return Check("api", OK, f"{url}: reachable, credentials accepted, answers like TimeTrack "
                                f"(HTTP {status}, {elapsed:.0f} ms)")
    if cause is Cause.AUTH:
        return Check("api", FAIL, f"{url}: credentials rejected ({message})",
                     f"check api.key ({_masked_key(api.key)}) and the secret (api.secret_file or the "
                     "systemd credential): they must match the API key in TimeTrack")
    if cause is Cause.TLS_NOT_YET_VALID:
        return Check("api", FAIL, f"{url}: TLS failed: certificate not yet valid ({message}); "
                                  "typical before the clock is synchronised",
                     f"let the clock sync first (see the clock check): {CLOCK_FIX}")
    if cause is Cause.TLS:
        return Check("api", FAIL, f"{url}: TLS failed ({message})",
                     "check the system time, api.ca_bundle and the server's certificate chain")
    if cause is Cause.DNS:
        return Check("api", FAIL, f"{url}: unreachable: DNS lookup of {host} failed ({message})",
                     "check the host name in api.base_url and the network/DNS (resolvectl status)")
    if cause in (Cause.REFUSED, Cause.CONNECT_TIMEOUT, Cause.NOT_SENT):
        return Check("api", FAIL, f"{url}: unreachable ({message})",
                     "check api.base_url (host and port), the network, and that the server is up")
    if cause in (Cause.TIMEOUT, Cause.RESET, Cause.TRUNCATED):
        return Check("api", FAIL, f"{url}: unreachable: no (complete) answer in time ({message})",
                     "check the network, a firewall or proxy, and that the server is up")
    if cause is Cause.DEADLINE:
        return Check("api", FAIL, f"{url}: the server trickles its answer ({message})",
                     "a proxy or middlebox in between stalls answers; the sender gives up on each request "
                     "after api.request_deadline and backs off")
    if cause in (Cause.HTML, Cause.REDIRECT):
        return Check("api", FAIL, f"{url}: {message}",
                     "api.base_url must be the API root (…/api/v2/ext), not the web app; if the network has "
                     "a captive portal (guest Wi-Fi), log the kiosk in or use another network")
    if cause is Cause.TOO_LARGE:
        return Check("api", FAIL, f"{url}: {message}: not what TimeTrack answers",
                     "check api.base_url: it must point at the API root that holds /attendances")
    if cause is Cause.RATE_LIMITED:
        return Check("api", WARN, f"{url}: reachable, but the server asks to slow down ({message})",
                     "try again later; the sender backs off by itself")
    if status == 404:
        return Check("api", FAIL, f"{url}: not found ({message})",
                     "correct api.base_url: it must point at the API root that holds /attendances")
    if cause is Cause.SERVER_ERROR:
        return Check("api", FAIL, f"{url}: server error ({message})",
                     "the TimeTrack server has a problem: try again later; queued entries wait safely")
    return Check("api", FAIL, f"{url}: unexpected answer ({message})", "check api.base_url and the API key's rights")


def _masked_key(key: str) -> str:
    return key[:4] + "…" if len(key) > 8 else "…"
