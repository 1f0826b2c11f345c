"""What goes back: the emulator's own JSON answers, and what the things that
stand between a kiosk and TimeTrack send instead.

The foreign answers copy real ones, because the kiosk must recognise them:

- a reverse proxy whose upstream failed (nginx with ``server_tokens off``:
  its built-in error page byte for byte, ``Server: nginx``,
  ``Content-Type: text/html`` and nginx's own reason phrases, such as
  "503 Service Temporarily Unavailable" and "504 Gateway Time-out");
- a captive portal or a web front end: a ``200 OK`` HTML login page, a
  ``302 Found`` to the portal's login page, or RFC 6585's
  ``511 Network Authentication Required``;
- a misconfigured server that echoes the request headers, secret included,
  in its error pages (as a TRACE echo or a framework's debug page does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any

from .model import ApiError

SERVER = "TimeTrackEmulator/1"
#: Where the emulated captive portal serves its login page (no auth, never faulted).
PORTAL_PATH = "/_portal/login"

JSON_TYPE = "application/json; charset=utf-8"
_PAD = b" " * 65536  # JSON and HTML both allow trailing whitespace: padding changes no meaning


@dataclass(frozen=True)
class Answer:
    """One HTTP answer before it goes on the wire.

    ``payload`` is JSON data (None: no body) unless ``body`` gives the bytes.
    ``server`` is the Server header (None: none sent); ``keep_alive`` adds an
    explicit ``Connection: keep-alive``, as nginx does.
    """

    status: int
    payload: Any = None
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    server: str | None = SERVER
    keep_alive: bool = False

    def data(self) -> bytes:
        """The body bytes."""
        if self.body is not None:
            return self.body
        return b"" if self.payload is None else json.dumps(self.payload).encode()

    def media_type(self) -> str | None:
        """The Content-Type to send (JSON when the body is a payload)."""
        if self.content_type is not None:
            return self.content_type
        return JSON_TYPE if self.body is None and self.payload is not None else None


def ok(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    """A TimeTrack JSON answer."""
    return Answer(status, payload, headers=dict(headers or {}))


def error(e: ApiError) -> Answer:
    """A TimeTrack error answer in the documented shape."""
    return Answer(e.status, e.body(), headers=dict(e.headers))


# --------------------------------------------------------------------------
# A reverse proxy whose upstream failed

# nginx's reason phrases differ from the RFC's for these two.
_NGINX_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}


def gateway(status: int) -> Answer:
    """nginx's answer when its upstream reset the connection (502), was
    unavailable (503) or timed out (504), after it forwarded the request."""
    reason = _NGINX_REASONS[status]
    page = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    return Answer(status, body=page.encode(), content_type="text/html", reason=reason, server="nginx",
                  keep_alive=True)


# --------------------------------------------------------------------------
# A captive portal or a web front end

_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Guest Wi-Fi - Sign in</title>
</head>
<body>
<h1>Welcome to Guest Wi-Fi</h1>
<p>Please sign in to access the Internet.</p>
<form method="post" action="{action}">
<label>Access code <input name="code" autocomplete="off"></label>
<label><input type="checkbox" name="accept" value="1"> I accept the terms of use</label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""

_PORTAL_HEADERS = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


def login_page() -> Answer:
    """The portal's login page: ``200 OK``, ``text/html``."""
    body = _LOGIN_PAGE.format(action=PORTAL_PATH).encode()
    return Answer(200, body=body, content_type="text/html; charset=utf-8", headers=dict(_PORTAL_HEADERS),
                  server=None)


def portal(mode: str, login_url: str) -> Answer:
    """What a captive portal answers to any request before sign-in.

    "page": the login page itself, ``200 OK`` (also what a ``base_url`` that
    points at a web front end gets). "redirect": ``302 Found`` to
    ``login_url``, which serves the page. "511": RFC 6585's ``511 Network
    Authentication Required``, an HTML page that links to ``login_url``.
    """
    if mode == "page":
        return login_page()
    if mode == "redirect":
        body = (f'<html><head><title>302 Found</title></head><body><p>Redirecting to '
                f'<a href="{login_url}">the sign-in page</a>.</p></body></html>\n')
        return Answer(302, body=body.encode(), content_type="text/html",
                      headers={"Location": login_url, **_PORTAL_HEADERS}, server=None)
    if mode == "511":
        body = ("<html>\n<head>\n<title>Network Authentication Required</title>\n"
                f'<meta http-equiv="refresh" content="0; url={login_url}">\n</head>\n<body>\n'
                f'<p>You need to <a href="{login_url}">authenticate with the local network</a> '
                "in order to gain access.</p>\n</body>\n</html>\n")
        return Answer(511, body=body.encode(), content_type="text/html", headers=dict(_PORTAL_HEADERS),
                      server=None)
    raise ValueError(f"captive portal mode {mode!r}")


# --------------------------------------------------------------------------
# Headers echoed in errors


def echo_headers(answer: Answer, raw_headers: Iterable[tuple[str, str]]) -> Answer:
    """``answer`` with the request's header lines, verbatim, appended to its body.

    A JSON error gets them in its ``detail`` (where a client looks for the
    server's words); an HTML page in a ``<pre>`` before ``</body>``.
    """
    lines = "".join(f"{name}: {value}\r\n" for name, value in raw_headers)
    payload = answer.payload
    if answer.body is None and isinstance(payload, dict) and payload.get("errors"):
        first = {**payload["errors"][0]}
        first["detail"] = f"{first['detail']}\nRequest headers:\n{lines}"
        return replace(answer, payload={**payload, "errors": [first, *payload["errors"][1:]]})
    data = answer.data()
    block = f"<pre>Request headers:\r\n{lines}</pre>\r\n".encode("latin-1", "replace")
    at = data.rfind(b"</body>")
    body = data[:at] + block + data[at:] if at >= 0 else data + block
    return replace(answer, body=body, payload=None)


# --------------------------------------------------------------------------
# Wire helpers


def http_date(now: float, offset: float = 0.0) -> str:
    """An HTTP ``Date`` value for ``now + offset`` (seconds since the epoch)."""
    return formatdate(now + offset, usegmt=True)


def padded(data: bytes, size: int) -> Iterator[bytes]:
    """``data``, then spaces up to ``size`` bytes in all, made as they are sent (never held whole)."""
    yield data
    left = size - len(data)
    while left > 0:
        piece = _PAD if left >= len(_PAD) else _PAD[:left]
        left -= len(piece)
        yield piece
