"""The HTTP side: routes, authentication, fault application, and the bytes on the wire.

:class:`Handler` reads a request, asks the emulator's :class:`~.faults.Dice`
what strikes it, lets :class:`~.model.Attendances` do the work, and writes
the answer itself (status line, headers, body), so that it can offset the
``Date`` header, dribble the head or the body byte by byte, and stream a body
of any size without holding it. Only the standard library is used:
:class:`http.server.ThreadingHTTPServer`, one thread per connection.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from . import answers
from .answers import PORTAL_PATH, Answer
from .faults import Faults
from .model import ApiError, bad_request, not_found

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger(__name__)

API_PREFIX = "/api/v2/ext"
ATTENDANCES = API_PREFIX + "/attendances"
ADMIN_PREFIX = "/_emulator"
KEY_HEADER = "X-TimeTrack-Api-Key"
SECRET_HEADER = "X-TimeTrack-Api-Secret"
MAX_BODY = 1 << 20


class Dropped(Exception):
    """The connection is to be closed on purpose without an answer."""


class Handler(BaseHTTPRequestHandler):
    """One connection: requests in, answers out, faults applied on the way."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real service behind its load balancer
    server_version = answers.SERVER
    sys_version = ""
    timeout = 60  # idle keep-alive connections give their thread back eventually
    # The head and the body go out in separate sends; with Nagle on, the body waits
    # for the client's delayed ACK (~40 ms on Linux) on every answer.
    disable_nagle_algorithm = True
    server: Server

    # -- plumbing

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track(self.server, self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track(self.server, self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests, unknown methods: answered in the documented error shape too."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self.close_connection = True
        try:
            self._send(answers.error(ApiError(code, phrase, explain or message or phrase)), api=False)
        except Dropped:
            self._drop()

    def do_GET(self) -> None:
        """GET, POST, PUT and DELETE all go through one dispatch; other methods get 501."""
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- requests

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        api = path == API_PREFIX or path.startswith(API_PREFIX + "/")
        try:
            answer = self._answer(path, parts.query, api)
        except Dropped:
            if api:
                emulator._count(self.command, "dropped")
            self._drop()
            return
        # Counted before the client can see the answer, so that a test reading
        # stats right after its request finds it there.
        if api:
            emulator._count(self.command, answer.status)
        try:
            self._send(answer, api=api)
        except Dropped:  # stop() while an answer was dribbling
            self._drop()

    def _answer(self, path: str, query: str, api: bool) -> Answer:
        """The answer to this request, faults applied; Dropped when there is to be none.

        Layers, outside in: a captive portal (answers itself, nothing reaches
        the rest), a reverse proxy (may fail without forwarding, or forward and
        then fail), and the upstream server (its own faults, then the API)."""
        dice = self.server.emulator.dice
        forwarded = True
        try:
            body = self._read_body()
            if path == PORTAL_PATH:
                return answers.login_page()
            if api:
                portal = self._portal()
                if portal is not None:
                    return portal
                status = dice.gateway_down()
                if status is not None:
                    answer, forwarded = answers.gateway(status), False
            if forwarded:
                if api:
                    self._upstream_faults()
                answer = self._handle(path, query, body, api)
        except ApiError as e:
            answer = answers.error(e)
        if api:
            status = dice.gateway() if forwarded else None
            if status is not None:
                answer = answers.gateway(status)
            if answer.status >= 400 and dice.echo():
                answer = answers.echo_headers(answer, self.headers.raw_items())
        return answer

    def _portal(self) -> Answer | None:
        """Latency on the way, then a captive portal's answer, if one is in front."""
        emulator = self.server.emulator
        delay = emulator.dice.latency()
        if delay and emulator._stopping.wait(delay):
            raise Dropped  # stopping: do not answer late
        mode = emulator.dice.portal()
        if mode is None:
            return None
        base = emulator.url.removesuffix(API_PREFIX)
        return answers.portal(mode, f"{base}{PORTAL_PATH}?continue={quote(base + self.path, safe='')}")

    def _upstream_faults(self) -> None:
        """The server's own failures before it handles the request: Dropped, or an ApiError raised."""
        dice = self.server.emulator.dice
        if dice.drop_before_store():
            raise Dropped
        failure = dice.early_error()
        if failure is not None:
            raise failure

    def _handle(self, path: str, query: str, body: Any, api: bool) -> Answer:
        self._authenticate()
        try:
            if api:
                return self._api(path, query, body)
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                return self._admin(path, body)
            raise ApiError(404, "Not found", f"no such resource {path}; the API is under {API_PREFIX}/")
        except OSError as e:  # the data file could not be written: nothing was changed
            raise ApiError(500, "Internal server error", f"emulator could not store the change: {e}") from e

    def _read_body(self) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(411, "Length required", "send a Content-Length; chunked bodies are not accepted")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise bad_request("Content-Length is not a number") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "Payload too large", f"body of {length} bytes exceeds {MAX_BODY}")
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad_request(f"body is not valid JSON: {e}") from None

    def _authenticate(self) -> None:
        key, secret = self.server.emulator._credentials
        for header, expected in ((KEY_HEADER, key), (SECRET_HEADER, secret)):
            given = self.headers.get(header)
            if given is None:
                raise ApiError(401, "Unauthorized", f"missing {header} header")
            # Compare bytes in constant time; never echo what was sent (unless echo_headers says so).
            # (http.server decodes headers as latin-1: encoding back gives the bytes sent.)
            if not hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode()):
                raise ApiError(401, "Unauthorized", f"{header} is not valid for this account")

    def _api(self, path: str, query: str, body: Any) -> Answer:
        emulator = self.server.emulator
        attendances = emulator.attendances
        method = self.command
        if path == ATTENDANCES:
            if method == "GET":
                return answers.ok(200, attendances.list(_query(query)))
            if method == "POST":
                _no_query(query)
                entry = attendances.create(body)
                if emulator.dice.drop_after_store():
                    raise Dropped
                faults = emulator.dice.faults
                return answers.ok(faults.create_status, entry if faults.create_body else None)
            raise _method_not_allowed(method, "GET, POST")
        if path.startswith(ATTENDANCES + "/"):
            _no_query(query)
            tail = path[len(ATTENDANCES) + 1:]
            if not tail.isdigit() or not tail.isascii():
                raise not_found(tail)
            entry_id = int(tail)
            if method == "GET":
                return answers.ok(200, attendances.read(entry_id))
            if method == "PUT":
                return answers.ok(200, attendances.update(entry_id, body))
            if method == "DELETE":
                return answers.ok(200, attendances.delete(entry_id))
            raise _method_not_allowed(method, "GET, PUT, DELETE")
        raise ApiError(404, "Not found", f"{path} is not emulated; only {ATTENDANCES} is")

    def _admin(self, path: str, body: Any) -> Answer:
        emulator = self.server.emulator
        route = (self.command, path[len(ADMIN_PREFIX):])
        if route == ("GET", "/faults"):
            return answers.ok(200, emulator.faults().to_dict())
        if route == ("PUT", "/faults"):
            try:
                faults = Faults.from_dict({} if body is None else body)
            except (ValueError, TypeError) as e:
                raise bad_request(str(e)) from None
            emulator.set_faults(faults)
            return answers.ok(200, faults.to_dict())
        if route == ("GET", "/stats"):
            return answers.ok(200, emulator.stats())
        if route == ("GET", "/entries"):
            return answers.ok(200, emulator.entries(include_deleted=True))
        if route == ("POST", "/reset"):
            emulator.reset()
            return answers.ok(204, None)
        allowed = {"/faults": "GET, PUT", "/stats": "GET", "/entries": "GET", "/reset": "POST"}.get(route[1])
        if allowed:
            raise _method_not_allowed(self.command, allowed)
        raise ApiError(404, "Not found", f"no such admin resource {path} (faults, stats, entries, reset)")

    # -- answers

    def _send(self, answer: Answer, api: bool) -> None:
        """Write ``answer``, shaped by the faults that strike it (only API answers are faulted,
        but every answer's Date carries the date_offset). Dropped if the emulator stops meanwhile."""
        data = answer.data()
        shape = self.server.emulator.dice.shape(api, bool(data))
        status = answer.status
        size = max(len(data), shape.oversize)
        headers: list[tuple[str, str]] = []
        if answer.server:
            headers.append(("Server", answer.server))
        headers.append(("Date", answers.http_date(time.time(), shape.date_offset)))
        media_type = answer.media_type()
        if media_type and data:
            headers.append(("Content-Type", media_type))
        if shape.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif status != 204:
            headers.append(("Content-Length", str(size)))
        headers.extend(answer.headers.items())
        if self.close_connection:
            headers.append(("Connection", "close"))
        elif answer.keep_alive:
            headers.append(("Connection", "keep-alive"))
        reason = answer.reason or _phrase(status)
        head = f"{self.protocol_version} {status} {reason}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        self.log_request(status, size)
        piece, pause = shape.body_piece, shape.body_pause
        if shape.slow_total and size:
            # The head at once, the body in 8 pieces: the client has its status
            # line but its body read stalls, after the request was handled.
            pieces = min(size, 8)
            piece, pause = -(-size // pieces), shape.slow_total / pieces
        try:
            self._write(head.encode("latin-1"), 1 if shape.head_pause else 0, shape.head_pause, False)
            if status != 204:
                body = answers.padded(data, size) if size > len(data) else (data,)
                self._write(body, piece, pause, shape.chunked)
        except OSError:  # the client gave up (often the point of the fault)
            self.close_connection = True

    def _write(self, chunks: bytes | Iterable[bytes], piece: int, pause: float, chunked: bool) -> None:
        """Send ``chunks``, waiting ``pause`` seconds before each ``piece`` bytes (piece 0: no pauses)."""
        stopping = self.server.emulator._stopping
        write = self.wfile.write
        if isinstance(chunks, bytes):
            chunks = (chunks,)
        done = piece  # bytes sent of the current piece: the first byte starts a new piece
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                if piece and done >= piece:
                    if pause and stopping.wait(pause):
                        raise Dropped
                    done = 0
                n = len(view) if not piece else min(len(view), piece - done)
                part = view[:n]
                write(b"%x\r\n%s\r\n" % (n, part) if chunked else part)
                view, done = view[n:], done + n
        if chunked:
            write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close without answering: the client sees an empty reply, not a hang."""
        self.close_connection = True
        cut(self.connection)


def cut(conn: socket.socket) -> None:
    """shutdown() sends FIN at once, whoever else holds the socket: the peer sees
    an empty reply (RemoteDisconnected) or a reset instead of waiting."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _method_not_allowed(method: str, allowed: str) -> ApiError:
    return ApiError(405, "Method not allowed", f"{method} is not allowed here (allowed: {allowed})",
                    headers={"Allow": allowed})


def _query(query: str) -> dict[str, str]:
    values = parse_qs(query, keep_blank_values=True)
    repeated = sorted(k for k, v in values.items() if len(v) > 1)
    if repeated:
        raise bad_request(f"query parameter given more than once: {', '.join(repeated)}")
    return {k: v[0] for k, v in values.items()}


def _no_query(query: str) -> None:
    if query:
        raise bad_request(f"no query parameters are accepted here, got {query!r}")
