"""Doctor checks of what the kiosk talks to: the clock and the TimeTrack API."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from urllib.parse import urlsplit

from kiosk import config
from kiosk.config import Settings
from kiosk.doctor import (CLOCK_FIX, FAIL, OK, PING_TIMEOUT_MAX, SKIP, WARN, Check, _needs_config)


# ---------------------------------------------------------------- clock




def check_clock(settings: Settings | None) -> Check:
    sync_file = settings.clock.sync_file if settings is not None else config.ClockSettings().sync_file
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if not sync_file:
        return Check("clock", SKIP, f"clock.sync_file is empty: sync check disabled (system time {now})")
    if os.path.exists(sync_file):
        return Check("clock", OK, f"synchronised ({sync_file} exists); system time {now}")
    return Check("clock", WARN,
                 f"not synchronised ({sync_file} missing); system time {now} may be wrong. Taps are still "
                 "recorded and corrected once the clock syncs", CLOCK_FIX)


# ---------------------------------------------------------------- API


def check_api(settings: Settings | None) -> Check:
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
    from kiosk.delivery.client import SendOutcome, TimeTrackClient

    api = replace(api, connect_timeout=min(api.connect_timeout, PING_TIMEOUT_MAX),
                  read_timeout=min(api.read_timeout, PING_TIMEOUT_MAX))
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
    message = result.message
    if result.outcome is SendOutcome.OK:
        return Check("api", OK, f"{url}: reachable, credentials accepted (HTTP {result.status}, {elapsed:.0f} ms)")
    if result.outcome is SendOutcome.AUTH:
        return Check("api", FAIL, f"{url}: credentials rejected ({message})",
                     f"check api.key ({_masked_key(api.key)}) and the secret (api.secret_file or the "
                     "systemd credential): they must match the API key in TimeTrack")
    if result.status is None:
        low = message.lower()
        if "tls error" in low:
            if "not yet valid" in low:
                return Check("api", FAIL, f"{url}: TLS failed: certificate not yet valid ({message}); "
                                          "typical before the clock is synchronised",
                             f"let the clock sync first (see the clock check): {CLOCK_FIX}")
            return Check("api", FAIL, f"{url}: TLS failed ({message})",
                         "check the system time, api.ca_bundle and the server's certificate chain")
        if "resolve" in low or "name or service" in low or "nodename" in low or "resolution" in low:
            return Check("api", FAIL, f"{url}: unreachable: DNS lookup of {host} failed ({message})",
                         "check the host name in api.base_url and the network/DNS (resolvectl status)")
        if "timeout" in low:
            return Check("api", FAIL, f"{url}: unreachable: no answer in time ({message})",
                         "check the network, a firewall or proxy, and that the server is up")
        return Check("api", FAIL, f"{url}: unreachable ({message})",
                     "check api.base_url (host and port), the network, and that the server is up")
    status = result.status
    if status in (408, 429):
        return Check("api", WARN, f"{url}: reachable, but the server asks to slow down ({message})",
                     "try again later; the sender backs off by itself")
    if 300 <= status < 400:
        return Check("api", FAIL, f"{url}: {message}", "correct api.base_url (scheme, host and path prefix)")
    if status == 404:
        return Check("api", FAIL, f"{url}: not found ({message})",
                     "correct api.base_url: it must point at the API root that holds /attendances")
    if status >= 500:
        return Check("api", FAIL, f"{url}: server error ({message})",
                     "the TimeTrack server has a problem: try again later; queued entries wait safely")
    return Check("api", FAIL, f"{url}: unexpected answer ({message})", "check api.base_url and the API key's rights")


def _masked_key(key: str) -> str:
    return key[:4] + "…" if len(key) > 8 else "…"

