"""The TimeTrack API client (requests): create an attendance entry, look one up, probe.

Every answer is classified into one :class:`SendOutcome`, because the sender's
guarantees hang on telling them apart:

- ``DELIVERED``: any 2xx to the POST; the server's id is read from the body when
  there is one (the docs say neither 200 vs 201 nor what the body holds).
- ``AUTH``: 401/403. The credentials are wrong or were rotated; nothing about
  the entry is wrong.
- ``REJECTED``: any other 4xx except 408/429: permanent for this entry.
- ``RETRY``: the entry was certainly not created: connection refused, DNS,
  connect timeout, TLS failure, 503, 408, 429 (with ``retry_after``).
- ``AMBIGUOUS``: the request may have reached the server and the answer was
  lost: read timeout, reset or close after sending, a truncated body; also
  500/502/504 and other 5xx, which a gateway or a failing handler may answer
  *after* the entry was stored. The entry may or may not exist: look it up
  (:meth:`TimeTrackClient.find`) before sending it again.

Why the session is set up the way it is:

- requests has no default timeout: every request passes ``(connect, read)``.
- urllib3 must never re-send a POST by itself (a slow server was seen to get
  the same POST three times): the adapter is mounted with ``Retry(total=0)``;
  retries happen in the sender, where the duplicate check lives.
- TLS is always verified (``ca_bundle`` or the certifi bundle); plain http:// is
  refused for anything but loopback unless ``allow_insecure_http``.
- The key and secret travel only in the two auth headers set on the session:
  never in a URL, never in a log line, masked in ``repr``.
"""

from __future__ import annotations

import email.utils
import enum
import http.client
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from kiosk import clock
from kiosk.config import ApiSettings, check_base_url
from kiosk.exc import DeliveryError, InsecureURL
from kiosk.model import OutboxEntry

log = logging.getLogger("kiosk.delivery.client")

KEY_HEADER = "X-TimeTrack-Api-Key"
SECRET_HEADER = "X-TimeTrack-Api-Secret"
PAGE_LIMIT = 1000  # the documented maximum
MAX_PAGES = 200  # a lookup reads at most this many pages (200,000 rows) before giving up
LOOKUP_MARGIN = timedelta(days=1)
MESSAGE_MAX = 300
USER_AGENT = "kiosk-timetrack/0.1"


class SendOutcome(enum.StrEnum):
    OK = "ok"  # ping / list: the API answered 2xx
    DELIVERED = "delivered"
    AUTH = "auth"
    REJECTED = "rejected"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class SendResult:
    """What one request came to. ``message`` is safe to log and store (no secret in it)."""

    outcome: SendOutcome
    status: int | None = None  # HTTP status, None when there was no answer
    message: str = ""
    server_id: Any = None  # DELIVERED: the id from the body, if any
    retry_after: float | None = None  # RETRY: the server's Retry-After, in seconds
    connectivity: bool = False  # RETRY/AMBIGUOUS without any HTTP answer (network, DNS, timeout)

    @property
    def ok(self) -> bool:
        return self.outcome in (SendOutcome.OK, SendOutcome.DELIVERED)


class LookupFailed(DeliveryError):
    """The filtered list could not be read: whether an entry exists is unknown."""

    def __init__(self, result: SendResult):
        super().__init__(result.message or str(result.outcome))
        self.result = result


def _no_retries() -> Retry:
    # total=0 and every counter 0: urllib3 never re-sends anything, least of all a POST.
    return Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                 raise_on_redirect=False, raise_on_status=False)


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
    """A requests session for one TimeTrack account. Not thread-safe: one per thread."""

    def __init__(self, api: ApiSettings):
        self.api = api
        self.base_url = check_url(api)
        check_credentials(api)
        self.zone = api.timezone
        self.timeout = (api.connect_timeout, api.read_timeout)
        # The environment (proxies, CA bundle) is read once here, not on every request:
        # requests' per-request environment scan costs more than a loopback POST.
        self.verify: bool | str = (api.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE")
                                   or os.environ.get("CURL_CA_BUNDLE") or True)
        s = requests.Session()
        s.trust_env = False  # also keeps ~/.netrc credentials out of our requests
        s.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        adapter = HTTPAdapter(max_retries=_no_retries())
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        s.headers.update({
            KEY_HEADER: api.key,
            SECRET_HEADER: api.secret,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        })
        s.verify = self.verify
        self.session = s
        self.page_limit = PAGE_LIMIT  # rows per lookup page

    def __repr__(self) -> str:
        return f"TimeTrackClient(base_url={self.base_url!r}, key={_mask(self.api.key)}, secret=********)"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> TimeTrackClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ requests

    def _request(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, self.base_url + path, timeout=self.timeout, verify=self.verify,
                                    allow_redirects=False, **kw)

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
        try:
            resp = self._request("POST", "/attendances", json=self.body(entry))
        except requests.RequestException as exc:
            return _classify_exception(exc, sent_body=True)
        return _classify_response(resp, created=True)

    def ping(self) -> SendResult:
        """A harmless authenticated GET (``/attendances?limit=1``): OK, AUTH, RETRY (no network) or other."""
        try:
            resp = self._request("GET", "/attendances", params={"limit": 1})
        except requests.RequestException as exc:
            r = _classify_exception(exc, sent_body=False)
            return r if r.outcome is SendOutcome.RETRY else SendResult(SendOutcome.RETRY, None, r.message, connectivity=True)
        return _classify_response(resp, created=False)

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
            try:
                resp = self._request("GET", "/attendances", params=params)
            except requests.RequestException as exc:
                r = _classify_exception(exc, sent_body=False)
                raise LookupFailed(SendResult(r.outcome if r.outcome is not SendOutcome.AMBIGUOUS else SendOutcome.RETRY,
                                          None, f"lookup: {r.message}", connectivity=r.connectivity)) from None
            if not 200 <= resp.status_code < 300:
                r = _classify_response(resp, created=False)
                # A refused lookup says nothing about the entry: never a rejection.
                outcome = SendOutcome.AUTH if r.outcome is SendOutcome.AUTH else SendOutcome.RETRY
                raise LookupFailed(SendResult(outcome, r.status, f"lookup: {r.message}", retry_after=r.retry_after))
            try:
                rows = resp.json()
            except ValueError:
                raise LookupFailed(SendResult(SendOutcome.RETRY, resp.status_code, "lookup: answer is not JSON")) from None
            if isinstance(rows, dict):  # tolerate a wrapped list
                rows = next((v for v in rows.values() if isinstance(v, list)), None)
            if not isinstance(rows, list):
                raise LookupFailed(SendResult(SendOutcome.RETRY, resp.status_code, "lookup: answer is not a list"))
            for row in rows:
                if isinstance(row, dict) and _matches(row, username, start, end, self.zone):
                    ident = row.get("ID", row.get("id"))
                    return "" if ident is None else ident
            if len(rows) != self.page_limit:  # the last page (or the server ignores limit)
                return None
            if rows == previous:
                raise LookupFailed(SendResult(SendOutcome.RETRY, resp.status_code,
                                          "lookup: the server ignores page_number; cannot read the whole list"))
            previous = rows
        raise LookupFailed(SendResult(SendOutcome.RETRY, None, f"lookup: more than {MAX_PAGES} pages of entries"))


# ---------------------------------------------------------------- classification


def _classify_response(resp: requests.Response, *, created: bool) -> SendResult:
    status = resp.status_code
    if 200 <= status < 300:
        if not created:
            return SendResult(SendOutcome.OK, status)
        return SendResult(SendOutcome.DELIVERED, status, server_id=_server_id(resp))
    message = f"HTTP {status}: {_error_text(resp)}"
    if status in (401, 403):
        return SendResult(SendOutcome.AUTH, status, message)
    if status in (408, 429):
        return SendResult(SendOutcome.RETRY, status, message, retry_after=_retry_after(resp))
    if 400 <= status < 500:
        return SendResult(SendOutcome.REJECTED, status, message)
    if status in (501, 503):  # not implemented / unavailable: the request was not processed
        return SendResult(SendOutcome.RETRY, status, message, retry_after=_retry_after(resp))
    if status >= 500:
        # A gateway (502/504) or a handler failing after the insert (500) may answer
        # an error for an entry that was stored: treat it like a lost answer.
        if created:
            return SendResult(SendOutcome.AMBIGUOUS, status, message, retry_after=_retry_after(resp))
        return SendResult(SendOutcome.RETRY, status, message, retry_after=_retry_after(resp))
    # 1xx/3xx: a redirect means a wrong base_url (or http->https); nothing was created.
    where = resp.headers.get("Location", "")
    return SendResult(SendOutcome.RETRY, status, f"HTTP {status}: unexpected redirect{' to ' + where if where else ''}"
                  " (check api.base_url)")


def _classify_exception(exc: requests.RequestException, *, sent_body: bool) -> SendResult:
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return SendResult(SendOutcome.RETRY, None, "connect timeout (not sent)", connectivity=True)
    if isinstance(exc, requests.exceptions.SSLError):
        # The handshake comes before the request: nothing was sent.
        return SendResult(SendOutcome.RETRY, None, f"TLS error (not sent): {_reason(exc)}", connectivity=True)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return SendResult(SendOutcome.AMBIGUOUS, None, "read timeout: no answer in time", connectivity=True)
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return SendResult(SendOutcome.AMBIGUOUS, None, f"answer cut short ({name})", connectivity=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        # NewConnectionError covers refused connections and DNS failures (NameResolutionError).
        if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
            return SendResult(SendOutcome.RETRY, None, f"cannot connect (not sent): {_reason(exc)}", connectivity=True)
        # Reset, closed without answer, timeout while reading the body: after sending.
        outcome = SendOutcome.AMBIGUOUS if sent_body else SendOutcome.RETRY
        return SendResult(outcome, None, f"connection lost: {_reason(exc)}", connectivity=True)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                        requests.exceptions.TooManyRedirects)):
        return SendResult(SendOutcome.RETRY, None, f"request not sent: {name}")
    # Anything else: we cannot tell whether it was sent; assume it may have been.
    return SendResult(SendOutcome.AMBIGUOUS if sent_body else SendOutcome.RETRY, None, f"request failed: {name}")


def _reason(exc: BaseException) -> str:
    """A short cause for logs: the innermost error's class and text, without URLs' noise."""
    inner: BaseException | None = exc
    seen = 0
    while inner is not None and seen < 6:
        nxt = getattr(inner, "reason", None) if isinstance(inner, MaxRetryError) else None
        if nxt is None and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        if nxt is None:
            nxt = inner.__cause__ or inner.__context__
        if nxt is None or nxt is inner:
            break
        inner, seen = nxt, seen + 1
    if isinstance(inner, http.client.RemoteDisconnected):
        return "closed without answer"
    if isinstance(inner, ConnectionResetError):
        return "connection reset"
    if isinstance(inner, ConnectionRefusedError) or "refused" in str(inner).lower():
        return "connection refused"
    text = str(inner).split(": ", 1)[-1] if inner is not None else ""
    return f"{type(inner).__name__}: {text}"[:MESSAGE_MAX] if text else type(inner).__name__


def _server_id(resp: requests.Response) -> Any:
    if not resp.content or not resp.content.strip():
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict):
        for key in ("ID", "id", "Id"):
            if body.get(key) is not None:
                return body[key]
    if isinstance(body, int) and not isinstance(body, bool):
        return body
    return None


def _error_text(resp: requests.Response) -> str:
    """The server's reason: title/detail of the documented error shape, else the text."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    parts: list[str] = []
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for err in body["errors"]:
            if isinstance(err, dict):
                title, detail = str(err.get("title") or ""), str(err.get("detail") or "")
                parts.append(f"{title}: {detail}" if title and detail and detail != title else title or detail)
    elif isinstance(body, dict):
        for key in ("message", "error", "detail", "title"):
            if body.get(key):
                parts.append(str(body[key]))
                break
    text = "; ".join(p for p in parts if p)
    if not text:
        text = " ".join((resp.text or "").split()) or resp.reason or ""
    return text[:MESSAGE_MAX]


def _retry_after(resp: requests.Response) -> float | None:
    return parse_retry_after(resp.headers.get("Retry-After"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):  # "nan", "inf", "1e999": not a delay
        return None
    return max(0.0, seconds)


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
