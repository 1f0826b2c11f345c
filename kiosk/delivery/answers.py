"""What one request to TimeTrack came to: an outcome, a typed cause, and the server's words made safe.

HTTP status alone does not say whether a request reached TimeTrack. A proxy
answers 502/503/504 after it forwarded the POST; a captive portal or a web
front end answers ``200 text/html``; a redirect comes from whatever sits at
``base_url``. So the rules here are:

- **Ambiguity is the default.** Any failure after which the request may have
  reached TimeTrack (timeout, reset, the deadline, a cut or oversized answer,
  any 5xx, a 2xx that cannot be confirmed) is ``AMBIGUOUS``: the entry is
  looked up before it is sent again. Only failures known to come before the
  request left skip the lookup (``RETRY``): connection refused, DNS, connect
  timeout, the TLS handshake, 401/403 (``AUTH``) and 429.
- **A 2xx counts only when it looks like TimeTrack**: an empty body or a JSON
  object (ideally with an id). An HTML or other non-JSON answer where
  TimeTrack would send JSON (a 2xx, 3xx, a 4xx that is not 401/403/429, or
  511) has cause :attr:`Cause.HTML` or :attr:`Cause.REDIRECT`: the sender
  pauses all delivery until a probe sees TimeTrack again.
- **Nothing from the server is trusted as text**: every message goes through
  :func:`kiosk.text.untrusted` (one line, cut to 300 characters, the key and
  the secret masked) before it can reach a log, the store or output.

Callers (the sender's policy, ``kiosk doctor``) decide on :class:`Cause`,
never on message wording::

    >>> classify_failure(DeadlineExceeded(30.0), created=True).cause
    <Cause.DEADLINE: 'deadline'>
"""

from __future__ import annotations

import email.utils
import enum
import http.client
import json
import math
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError

from kiosk import text
from kiosk.delivery.transport import Aborted, Answer, BodyTooLarge, DeadlineExceeded

X509_NOT_YET_VALID = 9  # OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID


class SendOutcome(enum.StrEnum):
    """What the sender does with the entry (see the module docstring)."""

    OK = "ok"  # ping / list: TimeTrack answered 2xx with JSON
    DELIVERED = "delivered"
    AUTH = "auth"
    REJECTED = "rejected"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"


class Cause(enum.StrEnum):
    """Why a request failed (``NONE`` when it did not), for decisions and ``kiosk doctor``."""

    NONE = "none"
    # Known to come before the request left: nothing reached TimeTrack.
    REFUSED = "refused"
    DNS = "dns"
    CONNECT_TIMEOUT = "connect_timeout"
    TLS = "tls"
    TLS_NOT_YET_VALID = "tls_not_yet_valid"  # the clock is behind the certificate (a Pi at boot)
    NOT_SENT = "not_sent"  # the request could not even be built (bad URL, header)
    AUTH = "auth"  # 401/403
    RATE_LIMITED = "rate_limited"  # 429
    # The request may have reached TimeTrack.
    TIMEOUT = "timeout"  # no answer within read_timeout (or a 408)
    RESET = "reset"  # the connection was reset or closed after sending
    DEADLINE = "deadline"  # api.request_deadline passed (a server trickling its answer)
    TRUNCATED = "truncated"  # the answer was cut short
    TOO_LARGE = "too_large"  # the answer was larger than the body cap
    SERVER_ERROR = "server_error"  # 5xx (also a proxy's error page)
    HTML = "html"  # a web page (or other non-JSON) where TimeTrack answers JSON: portal, wrong base_url
    REDIRECT = "redirect"  # 3xx: a portal's login redirect, or a wrong base_url
    UNCONFIRMED = "unconfirmed"  # 2xx JSON of an unexpected shape
    ABORTED = "aborted"  # the sender was stopping
    UNKNOWN = "unknown"
    # A 4xx in TimeTrack's words: this entry is refused for good.
    REJECTED = "rejected"


#: Causes after which the request certainly did not reach TimeTrack: no lookup needed.
NOT_SENT = frozenset({Cause.REFUSED, Cause.DNS, Cause.CONNECT_TIMEOUT, Cause.TLS, Cause.TLS_NOT_YET_VALID,
                      Cause.NOT_SENT, Cause.AUTH, Cause.RATE_LIMITED})
#: Causes that say the server at base_url is not TimeTrack (delivery pauses until it is again).
NOT_TIMETRACK = frozenset({Cause.HTML, Cause.REDIRECT})
#: No HTTP answer at all (the network, not the server): a streak of these means offline.
NO_ANSWER = frozenset({Cause.REFUSED, Cause.DNS, Cause.CONNECT_TIMEOUT, Cause.TLS, Cause.TLS_NOT_YET_VALID,
                       Cause.TIMEOUT, Cause.RESET, Cause.TRUNCATED, Cause.ABORTED})

PORTAL_MESSAGE = "the server at base_url answered with a web page: wrong base_url or a captive portal"


@dataclass(frozen=True)
class SendResult:
    """What one request came to. ``message`` is safe to log and store (untrusted text, secrets masked)."""

    outcome: SendOutcome
    status: int | None = None  # HTTP status, None when there was no answer
    message: str = ""
    server_id: Any = None  # DELIVERED: the id from the body, if any
    retry_after: float | None = None  # the server's Retry-After, in seconds
    connectivity: bool = False  # no HTTP answer at all (network, DNS, timeout)
    cause: Cause = Cause.NONE

    @property
    def ok(self) -> bool:
        return self.outcome in (SendOutcome.OK, SendOutcome.DELIVERED)

    @property
    def not_timetrack(self) -> bool:
        """The answer came from something that is not TimeTrack (a portal, a web front end)."""
        return self.cause in NOT_TIMETRACK

    @property
    def maybe_sent(self) -> bool:
        """The request may have reached TimeTrack: look the entry up before sending it again."""
        return not self.ok and self.cause not in NOT_SENT and self.outcome is not SendOutcome.REJECTED


# ---------------------------------------------------------------- answers


def classify_answer(answer: Answer, *, created: bool, secrets: Iterable[str] = ()) -> SendResult:
    """The outcome of an HTTP answer to a POST (``created``) or a GET (ping, list)."""
    status = answer.status
    kind, body = _body(answer)

    def failed(cause: Cause, message: str, *, outcome: SendOutcome | None = None) -> SendResult:
        if outcome is None:
            outcome = SendOutcome.AMBIGUOUS if created and cause not in NOT_SENT else SendOutcome.RETRY
        return SendResult(outcome, status, message, retry_after=_retry_after(answer), cause=cause)

    if 200 <= status < 300:
        if kind in ("html", "text"):
            return failed(Cause.HTML, f"HTTP {status}: {PORTAL_MESSAGE} ({_describe(answer, kind, body, secrets)})")
        if created:
            if kind == "empty":
                return SendResult(SendOutcome.DELIVERED, status)
            server_id = _server_id(body)
            if isinstance(body, dict) or server_id is not None:
                return SendResult(SendOutcome.DELIVERED, status, server_id=server_id)
            return failed(Cause.UNCONFIRMED, f"HTTP {status}: the answer is JSON but not an entry; "
                                             "cannot confirm the entry was stored")
        if kind == "json" and isinstance(body, list | dict):
            return SendResult(SendOutcome.OK, status)
        return failed(Cause.UNCONFIRMED, f"HTTP {status}: an empty or unexpected answer where TimeTrack sends a list")
    said = _describe(answer, kind, body, secrets)
    message = f"HTTP {status}: {said}" if said else f"HTTP {status}"
    if status in (401, 403):
        return SendResult(SendOutcome.AUTH, status, message, cause=Cause.AUTH)
    if status == 429:
        return failed(Cause.RATE_LIMITED, message)
    if 300 <= status < 400:
        where = text.untrusted(answer.headers.get("Location", ""), secrets=secrets, limit=120)
        return failed(Cause.REDIRECT, f"HTTP {status}: redirected{' to ' + where if where else ''}: "
                                      f"{PORTAL_MESSAGE}")
    if status == 511 or (400 <= status < 500 and kind in ("html", "text")):
        return failed(Cause.HTML, f"{message}: {PORTAL_MESSAGE}")
    if status == 408:
        return failed(Cause.TIMEOUT, message)
    if 400 <= status < 500:
        return SendResult(SendOutcome.REJECTED, status, message, cause=Cause.REJECTED)
    if status >= 500:
        # A gateway (502/503/504) or a handler failing after the insert may answer
        # an error for an entry that was stored: never re-send without a lookup.
        return failed(Cause.SERVER_ERROR, message)
    return failed(Cause.UNKNOWN, message)  # 1xx and the like: nothing a server should send


def _body(answer: Answer) -> tuple[str, Any]:
    """("empty" | "json" | "html" | "text", the parsed JSON or the decoded text)."""
    raw = answer.body
    if not raw.strip():
        return "empty", None
    ctype = answer.headers.get("Content-Type", "").lower()
    try:
        return "json", json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        pass
    decoded = raw.decode("utf-8", "replace")
    head = decoded.lstrip()[:200].lower()
    if "html" in ctype or "xml" in ctype or head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body", "<")):
        return "html", decoded
    return "text", decoded


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _describe(answer: Answer, kind: str, body: Any, secrets: Iterable[str]) -> str:
    """The server's reason, as untrusted text: the documented error shape, a page's title, or the text."""
    parts: list[str] = []
    if kind == "json" and isinstance(body, dict) and isinstance(body.get("errors"), list):
        for err in body["errors"][:5]:
            if isinstance(err, dict):
                title, detail = str(err.get("title") or ""), str(err.get("detail") or "")
                parts.append(f"{title}: {detail}" if title and detail and detail != title else title or detail)
    elif kind == "json" and isinstance(body, dict):
        for key in ("message", "error", "detail", "title"):
            if body.get(key):
                parts.append(str(body[key]))
                break
    elif kind == "html":
        title = _TITLE.search(body[:65536])
        words = title.group(1) if title else _TAG.sub(" ", body[:4096])
        parts.append(f"a web page ({words.strip() or 'no title'})")
    elif kind == "text":
        parts.append(body[:4096])
    said = "; ".join(p for p in parts if p) or answer.reason or ""
    return text.untrusted(said, secrets=secrets)


def _server_id(body: Any) -> Any:
    """The entry's id in a create answer: ``ID``/``id`` of an object (or a one-object list), or a bare int."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict):
        for key in ("ID", "id", "Id"):
            value = body.get(key)
            if isinstance(value, int | str) and not isinstance(value, bool):
                return value if isinstance(value, int) else text.untrusted(value, limit=64)
        return None
    if isinstance(body, int) and not isinstance(body, bool):
        return body
    return None


def _retry_after(answer: Answer) -> float | None:
    return parse_retry_after(answer.headers.get("Retry-After"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent or bad.

        >>> parse_retry_after("120"), parse_retry_after("soon")
        (120.0, None)
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):  # "nan", "inf", "1e999": not a delay
        return None
    return max(0.0, seconds)


# ---------------------------------------------------------------- failures without an answer


def classify_failure(exc: BaseException, *, created: bool, secrets: Iterable[str] = ()) -> SendResult:
    """The outcome of a request that got no (complete) answer: ``exc`` from requests or the transport."""
    reason = text.untrusted(_reason(exc), secrets=secrets)

    def result(cause: Cause, message: str) -> SendResult:
        ambiguous = created and cause not in NOT_SENT
        outcome = SendOutcome.AMBIGUOUS if ambiguous else SendOutcome.RETRY
        return SendResult(outcome, None, message, connectivity=cause in NO_ANSWER, cause=cause)

    if isinstance(exc, DeadlineExceeded):
        return result(Cause.DEADLINE, f"no complete answer within api.request_deadline ({exc.seconds:g}s): "
                                      "the server trickles or stalls")
    if isinstance(exc, BodyTooLarge):
        return SendResult(SendOutcome.AMBIGUOUS if created else SendOutcome.RETRY, exc.status,
                          f"answer larger than {exc.limit // 1024} KiB: not read", cause=Cause.TOO_LARGE)
    if isinstance(exc, Aborted):
        return result(Cause.ABORTED, "request abandoned: the sender is stopping")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return result(Cause.CONNECT_TIMEOUT, "connect timeout (not sent)")
    if isinstance(exc, requests.exceptions.SSLError):
        cert = _find(exc, ssl.SSLCertVerificationError)
        if cert is not None and (getattr(cert, "verify_code", None) == X509_NOT_YET_VALID
                                 or "not yet valid" in str(cert)):
            return result(Cause.TLS_NOT_YET_VALID, f"TLS error (not sent): certificate not yet valid: {reason}")
        return result(Cause.TLS, f"TLS error (not sent): {reason}")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return result(Cause.TIMEOUT, "read timeout: no answer in time")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return result(Cause.TRUNCATED, f"answer cut short ({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _find(exc, NameResolutionError, socket.gaierror) is not None:
            return result(Cause.DNS, f"cannot connect (not sent): DNS lookup failed: {reason}")
        if _find(exc, ConnectionRefusedError) is not None:
            return result(Cause.REFUSED, "cannot connect (not sent): connection refused")
        if _find(exc, ConnectTimeoutError) is not None:
            return result(Cause.CONNECT_TIMEOUT, "connect timeout (not sent)")
        if _find(exc, ReadTimeoutError, TimeoutError) is not None:
            return result(Cause.TIMEOUT, f"read timeout: the answer stalled ({reason})")
        if _find(exc, NewConnectionError) is not None:  # unreachable network or host, and the like
            return result(Cause.REFUSED, f"cannot connect (not sent): {reason}")
        return result(Cause.RESET, f"connection lost: {reason}")
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidHeader
                  | requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema):
        return result(Cause.NOT_SENT, f"request not sent: {type(exc).__name__}")
    return result(Cause.UNKNOWN, f"request failed: {type(exc).__name__}")


def _chain(exc: BaseException | None) -> Iterable[BaseException]:
    """``exc`` and what it wraps (reason, args[0], cause, context), at most a few levels deep."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 8:
        seen.add(id(exc))
        yield exc
        nxt = getattr(exc, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = nxt or exc.__cause__ or exc.__context__


def _find(exc: BaseException, *types: type) -> BaseException | None:
    return next((e for e in _chain(exc) if isinstance(e, types)), None)


def _reason(exc: BaseException) -> str:
    """A short cause for logs: the innermost error's class and text, without URLs' noise."""
    inner = list(_chain(exc))[-1]
    if isinstance(inner, http.client.RemoteDisconnected):
        return "closed without answer"
    if isinstance(inner, ConnectionResetError):
        return "connection reset"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    said = str(inner).split(": ", 1)[-1]
    return f"{type(inner).__name__}: {said}" if said else type(inner).__name__
