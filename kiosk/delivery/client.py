"""The TimeTrack API client: create an attendance entry, look one up, probe.

Every request goes through a :class:`~kiosk.delivery.transport.Transport`
(total deadline ``api.request_deadline``, 1 MiB body cap, no retries) and every
answer is classified by :mod:`kiosk.delivery.answers` into a
:class:`SendResult` with a typed :class:`Cause`; the sender's guarantees hang
on telling them apart (see that module for the rules).

Why the client is set up the way it is:

- requests has no default timeout: every request passes ``(connect, read)``,
  and the transport adds the total deadline that those cannot give.
- TLS is always verified (``ca_bundle`` or the certifi bundle); plain http:// is
  refused for anything but loopback unless ``allow_insecure_http``.
- The key and secret travel only in the two auth headers: never in a URL,
  never in a log line, masked in ``repr`` and in every message a server sends back.
- With a ``clock``, the ``Date`` header of TimeTrack's own answers over verified
  TLS (or plain http to loopback, the emulator) is handed to
  :meth:`kiosk.clock.Clock.observe`: evidence of the true time while the
  kernel's clock is not synchronised.

    >>> with TimeTrackClient(settings.api) as client:           # doctest: +SKIP
    ...     result = client.create(entry)
    ...     result.outcome, result.cause, result.server_id
    (<SendOutcome.DELIVERED: 'delivered'>, <Cause.NONE: 'none'>, 1042)
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from kiosk import clock, text
from kiosk.config import ApiSettings, check_base_url, is_loopback
from kiosk.delivery.answers import (  # noqa: F401 - re-exported: the client's public vocabulary
    NOT_SENT,
    Cause,
    SendOutcome,
    SendResult,
    classify_answer,
    classify_failure,
    parse_retry_after,
)
from kiosk.delivery.transport import Answer, Transport, TransportError
from kiosk.exc import DeliveryError, InsecureURL
from kiosk.model import OutboxEntry

if TYPE_CHECKING:
    from kiosk.clock import Clock

log = logging.getLogger("kiosk.delivery.client")

KEY_HEADER = "X-TimeTrack-Api-Key"
SECRET_HEADER = "X-TimeTrack-Api-Secret"
PAGE_LIMIT = 1000  # the documented maximum
MAX_PAGES = 200  # a lookup reads at most this many pages (200,000 rows) before giving up
LOOKUP_MARGIN = timedelta(days=1)
USER_AGENT = "kiosk-timetrack/0.1"
#: Causes whose answer came from TimeTrack itself: its Date header is evidence of the time.
_TIMETRACK_SPOKE = frozenset({Cause.NONE, Cause.AUTH, Cause.RATE_LIMITED, Cause.REJECTED})


class LookupFailed(DeliveryError):
    """The filtered list could not be read: whether an entry exists is unknown."""

    def __init__(self, result: SendResult):
        super().__init__(result.message or str(result.outcome))
        self.result = result


def check_url(api: ApiSettings) -> str:
    """The base URL without a trailing slash; raises ValueError/InsecureURL when unusable.

    The rules live in :func:`kiosk.config.check_base_url`; this only names the key.
    """
    try:
        return check_base_url(api.base_url, api.allow_insecure_http)
    except InsecureURL as exc:
        raise InsecureURL(f"api.base_url: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"api.base_url: {exc}") from None


def check_credentials(api: ApiSettings) -> None:
    """Refuse a key or secret an HTTP header cannot carry; the message never shows the value."""
    for name, value in (("api.key", api.key), ("api.secret", api.secret)):
        if not value or value != value.strip() or any(not (32 <= ord(c) < 127) for c in value):
            raise ValueError(f"{name} is empty or has characters an HTTP header cannot carry "
                             "(whitespace at the ends, control or non-ASCII characters)")


class TimeTrackClient:
    """One TimeTrack account. Not thread-safe: one per thread (:meth:`abort` excepted)."""

    def __init__(self, api: ApiSettings, *, clock: Clock | None = None, observer: Any = None):
        self.api = api
        self.observer = observer  # request_started()/request_ended() around each HTTP request (the sender's board)
        self.base_url = check_url(api)
        check_credentials(api)
        self.zone = api.timezone
        self.timeout = (api.connect_timeout, api.read_timeout)
        self.deadline = api.request_deadline
        self.secrets = (api.key, api.secret)
        self.clock = clock
        parts = urlsplit(self.base_url)
        # TLS is always verified; plain http only to loopback counts as a witness of the time.
        self.witness = parts.scheme == "https" or is_loopback(parts.hostname or "")
        # The environment (proxies, CA bundle) is read once here, not on every request:
        # requests' per-request environment scan costs more than a loopback POST.
        self.verify: bool | str = (api.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE")
                                   or os.environ.get("CURL_CA_BUNDLE") or True)
        self.transport = Transport(
            headers={KEY_HEADER: api.key, SECRET_HEADER: api.secret, "Accept": "application/json",
                     "User-Agent": USER_AGENT},
            verify=self.verify, proxies=requests.utils.get_environ_proxies(self.base_url),
            timeout=self.timeout, deadline=self.deadline)
        self.page_limit = PAGE_LIMIT  # rows per lookup page

    def __repr__(self) -> str:
        return f"TimeTrackClient(base_url={self.base_url!r}, key={_mask(self.api.key)}, secret=********)"

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        """From any thread: abandon the request in hand now (it ends as ``Cause.ABORTED``) and
        refuse any further one (the sender is stopping)."""
        self.transport.close()
        self.transport.abort()

    def __enter__(self) -> TimeTrackClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ requests

    def _request(self, method: str, path: str, *, created: bool, **kw) -> tuple[SendResult, Answer | None]:
        """One exchange, classified; never raises for HTTP or network trouble."""
        if self.observer is not None:
            self.observer.request_started()
        try:
            answer = self.transport.request(method, self.base_url + path, **kw)
        except (requests.RequestException, TransportError) as exc:
            return classify_failure(exc, created=created, secrets=self.secrets), None
        except Exception as exc:  # a library surprise: whether it was sent is unknown
            log.debug("request failed unexpectedly", exc_info=True)
            return classify_failure(exc, created=created, secrets=self.secrets), None
        finally:
            if self.observer is not None:
                self.observer.request_ended()
        result = classify_answer(answer, created=created, secrets=self.secrets)
        if self.clock is not None and self.witness and result.cause in _TIMETRACK_SPOKE:
            date = answer.headers.get("Date")
            if date:
                self.clock.observe(date, answer.sent, answer.received)
        return result, answer

    def body(self, entry: OutboxEntry) -> dict:
        """The POST body for an outbox entry: username, from, to (API format, zone setting), notes."""
        body = {
            "username": entry.username,
            "from": clock.to_api(entry.start, self.zone),
            "to": clock.to_api(entry.end, self.zone),
        }
        if entry.notes:
            body["notes"] = entry.notes
        return body

    def create(self, entry: OutboxEntry) -> SendResult:
        """POST one attendance entry and classify the outcome (never raises for HTTP or network trouble)."""
        return self._request("POST", "/attendances", created=True, json=self.body(entry))[0]

    def ping(self) -> SendResult:
        """A harmless authenticated GET (``/attendances?limit=1``): OK only when TimeTrack answers with JSON."""
        return self._request("GET", "/attendances", created=False, params={"limit": 1})[0]

    def find(self, entry: OutboxEntry) -> Any:
        """The server id of an existing entry equal to ``entry`` (user, from, to at ms precision), or None.

        A matching row without an id gives ``""`` (found, id unknown): compare the
        result with ``is None``. Raises :class:`LookupFailed` when the list cannot be
        read completely, so the caller never mistakes "unknown" for "absent".
        """
        username = entry.username
        start = clock.truncate_ms(entry.start)
        end = clock.truncate_ms(entry.end)
        params = {
            "username": username,
            # Wider than the entry: the server may filter by containment, overlap or date.
            "from": clock.to_api(start - LOOKUP_MARGIN, self.zone),
            "to": clock.to_api(end + LOOKUP_MARGIN, self.zone),
            "limit": self.page_limit,
        }
        previous: list | None = None
        for page in range(MAX_PAGES):
            params["page_number"] = page
            result, answer = self._request("GET", "/attendances", created=False, params=params)
            if not result.ok or answer is None:
                # A refused lookup says nothing about the entry: never a rejection.
                outcome = SendOutcome.AUTH if result.outcome is SendOutcome.AUTH else SendOutcome.RETRY
                raise LookupFailed(SendResult(outcome, result.status, f"lookup: {result.message}",
                                              retry_after=result.retry_after, connectivity=result.connectivity,
                                              cause=result.cause))
            rows = json.loads(answer.body)  # classify_answer made sure it is JSON
            if isinstance(rows, dict):  # tolerate a wrapped list
                rows = next((v for v in rows.values() if isinstance(v, list)), None)
            if not isinstance(rows, list):
                raise LookupFailed(SendResult(SendOutcome.RETRY, answer.status, "lookup: answer is not a list",
                                              cause=Cause.UNCONFIRMED))
            for row in rows:
                if isinstance(row, dict) and _matches(row, username, start, end, self.zone):
                    ident = row.get("ID", row.get("id"))
                    if ident is None or isinstance(ident, bool):
                        return ""
                    return ident if isinstance(ident, int) else text.untrusted(ident, secrets=self.secrets, limit=64)
            if len(rows) != self.page_limit:  # the last page (or the server ignores limit)
                return None
            if rows == previous:
                raise LookupFailed(SendResult(SendOutcome.RETRY, answer.status,
                                              "lookup: the server ignores page_number; cannot read the whole list",
                                              cause=Cause.UNCONFIRMED))
            previous = rows
        raise LookupFailed(SendResult(SendOutcome.RETRY, None, f"lookup: more than {MAX_PAGES} pages of entries",
                                      cause=Cause.UNCONFIRMED))


# ---------------------------------------------------------------- lookup matching


def _parse_row_time(text: Any, zone: str) -> tuple[datetime, bool] | None:
    """(aware UTC time, has sub-second part) of a row's timestamp, either form; None if unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        if text.endswith("Z"):
            dt = clock.from_api(text, zone)
        else:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = clock.from_api(text + "Z", zone)
            else:
                dt = clock.from_iso(text)
    except ValueError:
        return None
    main = text.rstrip("Z").split("+")[0]
    return dt, "." in main


def _same_time(row_value: Any, want: datetime, zone: str) -> bool:
    parsed = _parse_row_time(row_value, zone)
    if parsed is None:
        return False
    dt, fractional = parsed
    if fractional:
        return clock.truncate_ms(dt) == want
    # The server wrote whole seconds: compare at that precision.
    return dt.replace(microsecond=0) == want.replace(microsecond=0)


def _row_user(row: dict) -> str | None:
    user = row.get("user", row.get("username"))
    if isinstance(user, dict):
        user = user.get("username", user.get("user"))
    return user if isinstance(user, str) else None


def _matches(row: dict, username: str, start: datetime, end: datetime, zone: str) -> bool:
    user = _row_user(row)
    if user is None or user.casefold() != username.casefold():
        return False
    return _same_time(row.get("from"), start, zone) and _same_time(row.get("to"), end, zone)


def _mask(value: str) -> str:
    if not value:
        return "''"
    return repr(value[:2] + "…") if len(value) > 6 else "'…'"
