"""A TimeTrack attendance API server for demos, tests and site checks.

It follows the project's notes on TimeTrack's public API docs (timetrack-api.md)
and accepts every reading the docs allow where they contradict
themselves (``user``/``username``, ``minutesBreak``/``breakMinutes``,
``details``/``notes``, timestamps with or without milliseconds), so a client
that works here only relies on what the docs promise. Where the emulator is
stricter than the real service is likely to be (unknown fields and query
parameters are refused), it is to catch client typos that the real service
would silently ignore.

It also injects the failures a kiosk meets in the field (latency, 5xx, 429,
401, connections dropped before or after the entry was stored, a body that
stalls) on demand, switchable while running, and with a data file it survives
``kill -9`` with everything it acknowledged: the sender's "nothing lost,
nothing twice" guarantees are tested against it over real HTTP.

Only the standard library is used: :class:`http.server.ThreadingHTTPServer`.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import math
import os
import random
import re
import signal
import socket
import socketserver
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "API_PREFIX",
    "ADMIN_PREFIX",
    "CODE_DELETED",
    "Emulator",
    "Faults",
    "serve",
]

log = logging.getLogger("kiosk.sim.emulator")

API_PREFIX = "/api/v2/ext"
ATTENDANCES = API_PREFIX + "/attendances"
ADMIN_PREFIX = "/_emulator"

KEY_HEADER = "X-TimeTrack-Api-Key"
SECRET_HEADER = "X-TimeTrack-Api-Secret"

#: The one error code the docs give: a read of a deleted entry.
CODE_DELETED = 15020
DELETED_TITLE = "TimeEntry exist but it is deleted"
# Every other error uses its HTTP status as its code: the docs list no others,
# and a client must not depend on undocumented codes.

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_BODY = 1 << 20
DATA_FORMAT = "kiosk-emulator/1"

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")


# --------------------------------------------------------------------------
# Timestamps


def _parse_timestamp(value: Any, field: str) -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.fff]Z`` into a naive datetime.

    Naive on purpose: some TimeTrack accounts write local wall-clock time with
    a "Z" (see the API notes), so the emulator compares and stores what it was
    given without any zone conversion. A bad value is a 400 naming ``field``.
    """
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise _bad_request(
            f"{field}: expected a timestamp like 2020-10-17T10:00:00.000Z or 2020-10-17T10:00:00Z, got {value!r}"
        )
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(
            microsecond=int(value[20:23] or 0) * 1000
        )
    except ValueError as e:
        raise _bad_request(f"{field}: {value!r} is not a valid date and time ({e})") from None


def _format_timestamp(value: datetime) -> str:
    """The answer format: always with milliseconds, always with "Z"."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------
# Errors


class _ApiError(Exception):
    """An error answer in the documented shape."""

    def __init__(self, status: int, title: str, detail: str, code: int | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.code = status if code is None else code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"errors": [{"title": self.title, "status": self.status, "code": self.code, "detail": self.detail}]}


def _bad_request(detail: str) -> _ApiError:
    return _ApiError(400, "Bad request", detail)


def _not_found(entry_id: int | str) -> _ApiError:
    return _ApiError(404, "Not found", f"no attendance time entry with ID {entry_id}")


# --------------------------------------------------------------------------
# Faults


_PROBABILITIES = ("error_rate", "rate_limit", "drop_after_store", "drop_before_store")
_SECONDS = ("latency", "slow_body")


@dataclass(frozen=True)
class Faults:
    """Failure injection and response variants, all off by default.

    Probabilities are 0..1 per API request. ``latency`` and ``slow_body`` are
    seconds and apply to every API request while non-zero; ``unauthorized``
    answers every API request 401. ``seed`` makes the random draws repeatable;
    after ``max_faults`` injected faults (each fired fault counts one, latency
    included) the emulator behaves normally until faults are set again.

    ``create_status`` (201 or 200) and ``create_body`` (False: empty body) are
    not faults: the docs do not say what POST answers, so the client must
    accept every variant. They never consume the budget.

    Admin endpoints (``/_emulator/...``) are never faulted, so faults can always
    be switched off again.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit: float = 0.0
    retry_after: int = 1
    unauthorized: bool = False
    drop_after_store: float = 0.0
    drop_before_store: float = 0.0
    slow_body: float = 0.0
    seed: int | None = None
    max_faults: int | None = None
    create_status: int = 201
    create_body: bool = True

    def __post_init__(self) -> None:
        for name in _PROBABILITIES + _SECONDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"fault {name}: expected a number, got {value!r}")
            if value < 0 or (name in _PROBABILITIES and value > 1):
                limits = "a probability from 0 to 1" if name in _PROBABILITIES else "seconds, 0 or more"
                raise ValueError(f"fault {name}: expected {limits}, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("unauthorized", "create_body"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"fault {name}: expected true or false, got {getattr(self, name)!r}")
        for name, optional in (("retry_after", False), ("seed", True), ("max_faults", True)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or (name != "seed" and value < 0):
                raise ValueError(f"fault {name}: expected a whole number, 0 or more, got {value!r}")
        if self.create_status not in (200, 201):
            raise ValueError(f"fault create_status: expected 200 or 201, got {self.create_status!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Build from JSON-like data; unknown names are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise ValueError(f"faults: expected an object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown fault {', '.join(unknown)} (known: {', '.join(cls.names())})")
        return cls(**data)

    @classmethod
    def parse(cls, items: Iterable[str]) -> Faults:
        """Build from command-line ``name=value`` strings (``--fault error_rate=0.2``)."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            name, text = name.strip(), text.strip()
            if not sep or not name:
                raise ValueError(f"fault {item!r}: expected name=value, e.g. error_rate=0.2")
            if name not in types:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(cls.names())})")
            values[name] = _parse_value(name, types[name], text)
        return cls.from_dict(values)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def active(self) -> dict[str, Any]:
        """The settings that differ from the defaults (for the start line and logs)."""
        default = Faults()
        return {k: v for k, v in self.to_dict().items() if v != getattr(default, k)}


def _parse_value(name: str, type_: str, text: str) -> Any:
    lowered = text.lower()
    if type_ == "bool":
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"fault {name}={text}: expected true or false")
    if "None" in type_ and lowered in ("none", "null", ""):
        return None
    try:
        return float(text) if type_ == "float" else int(text)
    except ValueError:
        kind = "a number" if type_ == "float" else "a whole number"
        raise ValueError(f"fault {name}={text}: expected {kind}") from None


# --------------------------------------------------------------------------
# Entries

# Input field -> stored field. Both spellings of the contradicting names are accepted.
_ALIASES = {
    "minutesBreak": "breakMinutes",
    "breakMinutes": "breakMinutes",
    "details": "notes",
    "notes": "notes",
}
_COORDINATES = ("latitudeStart", "longitudeStart", "latitudeEnd", "longitudeEnd")
# Computed or assigned by the server: accepted (any object field may be sent) and ignored.
_READ_ONLY = ("ID", "workedMinutes")
_UPDATABLE = ("from", "to", "manual", *_ALIASES, *_COORDINATES, *_READ_ONLY)
_CREATABLE = ("username", "user", *_UPDATABLE)


def _span(record: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """A stored record's (from, to), parsed."""
    return _parse_timestamp(record["from"], "from"), _parse_timestamp(record["to"], "to")


def _public(record: Mapping[str, Any], span: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    """A stored record as the API answers it, with the documented field names.

    ``span``: the record's parsed (from, to), if known (the emulator keeps them)."""
    start, end = span if span is not None else _span(record)
    minutes = int((end - start).total_seconds() // 60)
    return {
        "ID": record["ID"],
        "user": record["user"],
        "from": record["from"],
        "to": record["to"],
        "notes": record["notes"],
        "manual": record["manual"],
        "workedMinutes": minutes - record["breakMinutes"],
        "breakMinutes": record["breakMinutes"],
        **{name: record[name] for name in _COORDINATES},
    }


def _apply_fields(record: dict[str, Any], body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Validate ``body`` and copy its fields into ``record`` (the stored form)."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise _bad_request(f"unknown field {', '.join(unknown)} (accepted: {', '.join(allowed)})")
    for a, b in (("minutesBreak", "breakMinutes"), ("details", "notes")):
        if a in body and b in body and body[a] != body[b]:
            raise _bad_request(f"{a} and {b} name the same field but differ: {body[a]!r} vs {body[b]!r}")
    for name in ("from", "to"):
        if name in body:
            record[name] = _format_timestamp(_parse_timestamp(body[name], name))
    for name, value in body.items():
        target = _ALIASES.get(name)
        if target == "breakMinutes":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _bad_request(f"{name}: expected a whole number of minutes, 0 or more, got {value!r}")
            record["breakMinutes"] = value
        elif target == "notes":
            if value is not None and not isinstance(value, str):
                raise _bad_request(f"{name}: expected text, got {value!r}")
            record["notes"] = value or ""
        elif name == "manual":
            if not isinstance(value, bool):
                raise _bad_request(f"manual: expected true or false, got {value!r}")
            record["manual"] = value
        elif name in _COORDINATES:
            record[name] = _coordinate(name, value)
    start, end = _parse_timestamp(record["from"], "from"), _parse_timestamp(record["to"], "to")
    if end <= start:
        raise _bad_request(f"to ({record['to']}) must be after from ({record['from']})")
    if record["breakMinutes"] * 60 > (end - start).total_seconds():
        raise _bad_request(
            f"breakMinutes ({record['breakMinutes']}) is longer than the entry ({record['from']} to {record['to']})"
        )


def _coordinate(name: str, value: Any) -> float | str | None:
    """The docs type coordinates as number/text: keep what was sent, if it is a number."""
    if value is None:
        return None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            if math.isfinite(float(value)):
                return value
        except ValueError:
            pass
    raise _bad_request(f"{name}: expected a number, got {value!r}")


# --------------------------------------------------------------------------
# HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes connections itself; never wait on an idle keep-alive

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.closing = False  # set by Emulator.stop(); connections accepted after that are cut at once
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints tracebacks to stderr; a client that hung up is normal here.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.exception("error while handling a request from %s", client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Dropped(Exception):
    """The connection was closed on purpose without an answer."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real service behind its load balancer
    server_version = "TimeTrackEmulator/1"
    sys_version = ""
    timeout = 60  # idle keep-alive connections give their thread back eventually
    # Headers and body go out in two sends; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms on Linux) on every answer.
    disable_nagle_algorithm = True
    server: _Server

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
        self._send(_ApiError(code, phrase, explain or message or phrase).body(), code)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- request handling

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        api = path == API_PREFIX or path.startswith(API_PREFIX + "/")
        try:
            try:
                body = self._read_body()
                if api:
                    self._inject_faults()
                self._authenticate()
                try:
                    if api:
                        status, payload, headers = self._api(path, parts.query, body)
                    elif path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                        status, payload, headers = self._admin(path, body)
                    else:
                        raise _ApiError(404, "Not found", f"no such resource {path}; the API is under {API_PREFIX}/")
                except OSError as e:  # the data file could not be written: nothing was changed
                    raise _ApiError(500, "Internal server error", f"emulator could not store the change: {e}") from e
            except _ApiError as e:
                status, payload, headers = e.status, e.body(), e.headers
        except _Dropped:
            if api:
                emulator._count(self.command, "dropped")
            self._drop()
            return
        # Counted before the client can see the answer, so that a test reading
        # stats right after its request finds it there.
        if api:
            emulator._count(self.command, status)
        try:
            self._send(payload, status, headers, faultable=api)
        except _Dropped:  # stop() while a slow body was dribbling
            self._drop()

    def _read_body(self) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _ApiError(411, "Length required", "send a Content-Length; chunked bodies are not accepted")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise _bad_request("Content-Length is not a number") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise _ApiError(413, "Payload too large", f"body of {length} bytes exceeds {MAX_BODY}")
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _bad_request(f"body is not valid JSON: {e}") from None

    def _inject_faults(self) -> None:
        """Apply the faults that act before the request is handled."""
        emulator = self.server.emulator
        faults = emulator._faults
        if faults.latency and emulator._fire("latency", 1.0) and emulator._stopping.wait(faults.latency):
            raise _Dropped  # stopping: do not answer late
        if emulator._fire("drop_before_store", faults.drop_before_store):
            raise _Dropped
        if emulator._fire("error_rate", faults.error_rate):
            status = emulator._choice((500, 502, 503))
            raise _ApiError(status, HTTPStatus(status).phrase, f"emulator fault injection: error_rate ({status})")
        if emulator._fire("rate_limit", faults.rate_limit):
            raise _ApiError(429, "Too many requests", "emulator fault injection: rate_limit",
                            headers={"Retry-After": str(faults.retry_after)})
        if faults.unauthorized and emulator._fire("unauthorized", 1.0):
            raise _ApiError(401, "Unauthorized", "emulator fault injection: unauthorized")

    def _authenticate(self) -> None:
        key, secret = self.server.emulator._credentials
        for header, expected in ((KEY_HEADER, key), (SECRET_HEADER, secret)):
            given = self.headers.get(header)
            if given is None:
                raise _ApiError(401, "Unauthorized", f"missing {header} header")
            # Compare bytes in constant time; never echo what was sent.
            # (http.server decodes headers as latin-1: encoding back gives the bytes sent.)
            if not hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode()):
                raise _ApiError(401, "Unauthorized", f"{header} is not valid for this account")

    def _api(self, path: str, query: str, body: Any) -> tuple[int, Any, dict]:
        emulator = self.server.emulator
        method = self.command
        if path == ATTENDANCES:
            if method == "GET":
                return 200, emulator._list(_query(query)), {}
            if method == "POST":
                _no_query(query)
                entry = emulator._create(body)
                faults = emulator._faults
                if emulator._fire("drop_after_store", faults.drop_after_store):
                    raise _Dropped
                return faults.create_status, (entry if faults.create_body else None), {}
            raise _method_not_allowed(method, "GET, POST")
        if path.startswith(ATTENDANCES + "/"):
            _no_query(query)
            tail = path[len(ATTENDANCES) + 1:]
            if not tail.isdigit() or not tail.isascii():
                raise _not_found(tail)
            entry_id = int(tail)
            if method == "GET":
                return 200, emulator._read(entry_id), {}
            if method == "PUT":
                return 200, emulator._update(entry_id, body), {}
            if method == "DELETE":
                return 200, emulator._delete(entry_id), {}
            raise _method_not_allowed(method, "GET, PUT, DELETE")
        raise _ApiError(404, "Not found", f"{path} is not emulated; only {ATTENDANCES} is")

    def _admin(self, path: str, body: Any) -> tuple[int, Any, dict]:
        emulator = self.server.emulator
        route = (self.command, path[len(ADMIN_PREFIX):])
        if route == ("GET", "/faults"):
            return 200, emulator.faults().to_dict(), {}
        if route == ("PUT", "/faults"):
            try:
                faults = Faults.from_dict({} if body is None else body)
            except (ValueError, TypeError) as e:
                raise _bad_request(str(e)) from None
            emulator.set_faults(faults)
            return 200, faults.to_dict(), {}
        if route == ("GET", "/stats"):
            return 200, emulator.stats(), {}
        if route == ("GET", "/entries"):
            return 200, emulator.entries(include_deleted=True), {}
        if route == ("POST", "/reset"):
            emulator.reset()
            return 204, None, {}
        allowed = {"/faults": "GET, PUT", "/stats": "GET", "/entries": "GET", "/reset": "POST"}.get(route[1])
        if allowed:
            raise _method_not_allowed(self.command, allowed)
        raise _ApiError(404, "Not found", f"no such admin resource {path} (faults, stats, entries, reset)")

    # -- answers

    def _send(self, payload: Any, status: int, headers: Mapping[str, str] | None = None,
              faultable: bool = False) -> None:
        emulator = self.server.emulator
        data = b"" if payload is None else json.dumps(payload).encode()
        slow = emulator._faults.slow_body if faultable and data else 0.0
        if slow and not emulator._fire("slow_body", 1.0):
            slow = 0.0
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        if status != 204:
            self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not slow or not data:
            self.wfile.write(data)
            return
        # Headers now, body in pieces: the client has its status line but its
        # body read stalls, so its read timeout fires after it sent the request.
        pieces = min(len(data), 8)
        step = -(-len(data) // pieces)
        stopping = emulator._stopping
        for i in range(0, len(data), step):
            if stopping.wait(slow / pieces):
                raise _Dropped
            try:
                self.wfile.write(data[i:i + step])
            except OSError:  # the client gave up: that is the point of this fault
                self.close_connection = True
                return

    def _drop(self) -> None:
        """Close without answering: the client sees an empty reply, not a hang."""
        self.close_connection = True
        _cut(self.connection)


def _cut(conn: socket.socket) -> None:
    """shutdown() sends FIN at once, whoever else holds the socket: the peer sees
    an empty reply (RemoteDisconnected) or a reset instead of waiting."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _method_not_allowed(method: str, allowed: str) -> _ApiError:
    return _ApiError(405, "Method not allowed", f"{method} is not allowed here (allowed: {allowed})",
                     headers={"Allow": allowed})


def _query(query: str) -> dict[str, str]:
    values = parse_qs(query, keep_blank_values=True)
    repeated = sorted(k for k, v in values.items() if len(v) > 1)
    if repeated:
        raise _bad_request(f"query parameter given more than once: {', '.join(repeated)}")
    return {k: v[0] for k, v in values.items()}


def _no_query(query: str) -> None:
    if query:
        raise _bad_request(f"no query parameters are accepted here, got {query!r}")


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    text = params.get(name)
    if text is None:
        return default
    value = int(text) if re.fullmatch(r"[0-9]{1,9}", text) else -1
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise _bad_request(f"{name}: expected a whole number {bound}, got {text!r}")
    return value


# --------------------------------------------------------------------------
# The emulator


class Emulator:
    """A TimeTrack attendance API on a background thread.

    ``port=0`` picks a free port; after a ``stop()``, ``start()`` binds the same
    port again so that clients configured with :attr:`url` keep working (a
    server restart). With ``data_path`` every acknowledged change is on disk
    (temp file, fsync, rename) before the answer is sent, and the file is read
    again at each start; ``start()`` raises ValueError, and serves nothing, when
    that file is not an emulator data file or its directory is missing or not
    writable. In memory a change costs O(1); a list is one pass over the
    records in ID order, with their parsed times kept alongside (no parsing,
    answers built for the requested page only). ``users``, when given, is the account's user list:
    creates for anyone else are refused (a permanent rejection).
    ``on_create(entry)`` is called from the handler thread with each new entry;
    its exceptions are logged, never sent to the client.

    All methods are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        key: str,
        secret: str,
        data_path: str | os.PathLike[str] | None = None,
        users: Iterable[str] | None = None,
        faults: Faults | Mapping[str, Any] | None = None,
        on_create: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.data_path = Path(data_path) if data_path is not None else None
        self.users = frozenset(users) if users is not None else None
        self.on_create = on_create
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        # Stored records by ID, in ID order (IDs only grow; an update keeps the place),
        # with their parsed (from, to) and their JSON text (one line of the data file).
        self._entries: dict[int, dict[str, Any]] = {}
        self._spans: dict[int, tuple[datetime, datetime]] = {}
        self._lines: dict[int, str] = {}
        self._next_id = 1
        self._credentials = ("", "")
        self.set_credentials(key, secret)
        self.set_faults(faults)
        self._reset_stats()

    # -- lifecycle

    def start(self) -> Emulator:
        """Load the data file (if any), bind and serve in a daemon thread."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("emulator already started")
            if self.data_path is not None:
                self._check_data_dir()
                self._load()
            self._stopping.clear()
            server = _Server((self.host, self.port), self)
            self._server = server
            self.port = server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"timetrack-emulator:{self.port}", daemon=True,
            )
            self._thread.start()
        log.info("TimeTrack emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections; entries stay (and are reloaded on start)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None:
                return
            self._stopping.set()
            server.closing = True
            connections = list(self._connections)
        server.shutdown()
        for conn in connections:  # keep-alive clients must see the server go, like a real restart
            _cut(conn)
        server.server_close()
        if thread is not None:
            thread.join(5)
        log.info("TimeTrack emulator on port %s stopped", self.port)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """The base URL, like the real ``https://<account>.timetrackenterprise.com/api/v2/ext``."""
        if not self.port:
            raise RuntimeError("the emulator has no port yet: start() it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PREFIX}"

    def __repr__(self) -> str:
        where = self.url if self.port else "not started"
        with self._lock:
            live = sum(not r["deleted"] for r in self._entries.values())
        return f"<Emulator {where} entries={live}>"

    # -- settings

    def set_credentials(self, key: str, secret: str) -> None:
        """Replace the accepted key and secret at once (secret rotation)."""
        if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
            raise ValueError("key and secret must be non-empty strings")
        with self._lock:
            self._credentials = (key, secret)
        log.info("API credentials replaced")

    def set_faults(self, faults: Faults | Mapping[str, Any] | None = None, /, **kw: Any) -> Faults:
        """Replace all fault settings: fields not given return to their defaults
        (``set_faults()`` switches every fault off). Restarts the seed and the budget."""
        if faults is not None and kw:
            raise TypeError("pass a Faults object or keyword arguments, not both")
        if not isinstance(faults, Faults):
            faults = Faults.from_dict(faults if faults is not None else kw)
        with self._lock:
            self._faults = faults
            self._random = random.Random(faults.seed)
            self._faults_fired = 0
        if faults.active():
            log.info("faults: %s", faults.active())
        return faults

    def faults(self) -> Faults:
        """The current settings (immutable: change them with :meth:`set_faults`)."""
        return self._faults

    # -- inspection

    def entries(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """A copy of the stored entries in API form, plus a ``deleted`` flag, by ID."""
        with self._lock:
            spans = self._spans
            return [{**_public(r, spans[i]), "deleted": r["deleted"]} for i, r in self._entries.items()
                    if include_deleted or not r["deleted"]]

    def stats(self) -> dict[str, Any]:
        """Counts of API requests (admin requests excluded); status "dropped" means no answer."""
        with self._lock:
            budget = self._faults.max_faults
            return {
                "requests": sum(self._by_method.values()),
                "by_method": dict(self._by_method),
                "by_status": dict(self._by_status),
                "creates": self._creates,
                "faults": dict(self._fired),
                "faults_remaining": None if budget is None else max(budget - self._faults_fired, 0),
            }

    def reset(self) -> None:
        """Forget every entry (on disk too) and the statistics; faults stay as set."""
        with self._lock:
            if self.data_path is not None:
                try:
                    self._write((), 1)
                except OSError as e:
                    log.error("cannot write %s: %s", self.data_path, e)
                    raise
            self._entries, self._spans, self._lines, self._next_id = {}, {}, {}, 1
            self._reset_stats()

    # -- internals used by the handler

    def _reset_stats(self) -> None:
        with self._lock:
            self._by_method: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self._fired: Counter[str] = Counter()
            self._creates = 0

    def _track(self, server: _Server, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if not open_:
                self._connections.discard(conn)
            elif server.closing:  # accepted just before stop(): never serve it
                _cut(conn)
            else:
                self._connections.add(conn)

    def _count(self, method: str, status: int | str) -> None:
        with self._lock:
            self._by_method[method] += 1
            self._by_status[str(status)] += 1

    def _fire(self, kind: str, probability: float) -> bool:
        """Decide whether fault ``kind`` strikes this request, within the budget."""
        if probability <= 0:
            return False
        with self._lock:
            budget = self._faults.max_faults
            if budget is not None and self._faults_fired >= budget:
                return False
            if probability < 1 and self._random.random() >= probability:
                return False
            self._faults_fired += 1
            self._fired[kind] += 1
        log.debug("fault injected: %s", kind)
        return True

    def _choice(self, options: tuple[int, ...]) -> int:
        with self._lock:
            return self._random.choice(options)

    def _list(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        unknown = sorted(set(params) - {"username", "user", "from", "to", "page_number", "limit"})
        if unknown:
            raise _bad_request(
                f"unknown query parameter {', '.join(unknown)} (accepted: username or user, from, to, page_number, limit)"
            )
        if "username" in params and "user" in params and params["username"] != params["user"]:
            raise _bad_request("username and user name the same filter but differ")
        user = params.get("username", params.get("user"))
        if user == "":
            raise _bad_request("username: must not be empty")
        start = _parse_timestamp(params["from"], "from") if "from" in params else None
        end = _parse_timestamp(params["to"], "to") if "to" in params else None
        page = _int_param(params, "page_number", 0, 0)
        limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        skip = page * limit
        rows: list[dict[str, Any]] = []
        with self._lock:  # one pass in ID order, no parsing; answers built for the page only
            spans = self._spans
            for entry_id, r in self._entries.items():
                if r["deleted"] or (user is not None and r["user"] != user):
                    continue
                span = spans[entry_id]
                if (start is not None and span[0] < start) or (end is not None and span[1] > end):
                    continue
                if skip:
                    skip -= 1
                    continue
                rows.append(_public(r, span))
                if len(rows) == limit:
                    break
        return rows

    def _live(self, entry_id: int) -> dict[str, Any]:
        record = self._entries.get(entry_id)
        if record is None:
            raise _not_found(entry_id)
        if record["deleted"]:
            raise _ApiError(404, DELETED_TITLE, f"time entry {entry_id} was deleted", code=CODE_DELETED)
        return record

    def _read(self, entry_id: int) -> dict[str, Any]:
        with self._lock:
            return _public(self._live(entry_id), self._spans[entry_id])

    def _create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad_request("body: expected a JSON object with username, from and to")
        missing = [name for name in ("username", "from", "to") if name not in body]
        if missing:
            raise _bad_request(f"missing required field {', '.join(missing)}")
        username = body["username"]
        if not isinstance(username, str) or not username.strip():
            raise _bad_request(f"username: expected a non-empty text, got {username!r}")
        if "user" in body and body["user"] != username:
            raise _bad_request(f"user ({body['user']!r}) and username ({username!r}) differ")
        if self.users is not None and username not in self.users:
            raise _ApiError(400, "Unknown user", f"there is no user {username!r} in this account")
        record: dict[str, Any] = {
            "ID": 0, "user": username, "from": None, "to": None, "notes": "", "manual": True,
            "breakMinutes": 0, **dict.fromkeys(_COORDINATES), "deleted": False,
        }
        _apply_fields(record, body, _CREATABLE)
        with self._lock:
            record["ID"] = self._next_id
            self._commit(record, self._next_id + 1)
            self._creates += 1
            entry = _public(record, self._spans[record["ID"]])
        log.info("created attendance %s for %s", entry["ID"], entry["user"])
        if self.on_create is not None:
            try:
                self.on_create(dict(entry))
            except Exception:
                log.exception("on_create callback failed")
        return entry

    def _update(self, entry_id: int, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad_request("body: expected a JSON object with the fields to change")
        for name in ("username", "user"):
            if name in body:
                raise _bad_request(f"{name} cannot be changed: delete the entry and create a new one")
        with self._lock:
            record = dict(self._live(entry_id))  # a copy: the stored one changes only once durable
            _apply_fields(record, body, _UPDATABLE)
            self._commit(record, self._next_id)
            return _public(record, self._spans[entry_id])

    def _delete(self, entry_id: int) -> dict[str, Any]:
        with self._lock:
            record = {**self._live(entry_id), "deleted": True}
            self._commit(record, self._next_id)
            return _public(record, self._spans[entry_id])

    # -- persistence

    def _commit(self, record: dict[str, Any], next_id: int) -> None:
        """Make one new or changed record durable, then current: on OSError nothing changed.

        O(1) in memory (amortised); with a data file, the file is rewritten whole
        (atomically: temp file, fsync, rename) from the records' cached JSON lines.
        """
        entry_id = record["ID"]
        line = json.dumps(record)
        if self.data_path is not None:
            try:
                self._write(self._file_lines(entry_id, line), next_id)
            except OSError as e:
                log.error("cannot write %s: %s", self.data_path, e)
                raise
        self._entries[entry_id] = record  # a new ID is the highest: ID order is kept
        self._spans[entry_id] = _span(record)
        self._lines[entry_id] = line
        self._next_id = next_id

    def _file_lines(self, entry_id: int, line: str) -> Iterable[str]:
        """The data file's entry lines with ``entry_id``'s line new or replaced."""
        lines = self._lines
        yield from (line if i == entry_id else text for i, text in lines.items())
        if entry_id not in lines:
            yield line

    def _write(self, lines: Iterable[str], next_id: int) -> None:
        """Replace the data file atomically: one entry per line, the whole a JSON object."""
        path = self.data_path
        assert path is not None
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f'{{"format": {json.dumps(DATA_FORMAT)}, "next_id": {int(next_id)}, "entries": [\n')
                f.write(",\n".join(lines))
                f.write("\n]}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)

    def _check_data_dir(self) -> None:
        """Fail at start, not with a 500 on every change, when the data file cannot be written."""
        path = self.data_path
        assert path is not None
        folder = path.parent
        if not folder.is_dir():
            what = "is not a directory" if folder.exists() else "does not exist"
            raise ValueError(f"{path}: cannot keep emulator data there: the directory {folder} {what}")
        if path.is_dir():
            raise ValueError(f"{path}: cannot keep emulator data there: it is a directory")
        try:  # what every change does: a temp file next to the data file
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise ValueError(f"{path}: cannot keep emulator data there: cannot write in {folder} "
                             f"({e.strerror or e})") from None

    def _load(self) -> None:
        path = self.data_path
        assert path is not None
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a kill mid-write
            try:
                stale.unlink()
            except OSError:
                pass
        if not path.exists():
            self._entries, self._spans, self._lines, self._next_id = {}, {}, {}, 1
            return
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not an emulator data file (not UTF-8 text)") from None
        except OSError as e:
            raise ValueError(f"{path}: cannot read emulator data ({e.strerror or e})") from None
        try:
            entries, next_id = _parse_data(text)
        except ValueError as e:
            raise ValueError(f"{path}: not an emulator data file ({e})") from None
        self._entries = {i: entries[i] for i in sorted(entries)}
        self._spans = {i: _span(r) for i, r in self._entries.items()}
        self._lines = {i: json.dumps(r) for i, r in self._entries.items()}
        self._next_id = next_id
        log.info("loaded %d entries from %s", len(entries), path)


def _parse_data(text: str) -> tuple[dict[int, dict[str, Any]], int]:
    """Entries by ID and the next ID from a data file's text; ValueError saying what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != DATA_FORMAT:
        raise ValueError(f'expected a JSON object with "format": "{DATA_FORMAT}"')
    next_id, rows = data.get("next_id"), data.get("entries")
    if isinstance(next_id, bool) or not isinstance(next_id, int) or next_id < 1:
        raise ValueError(f"next_id: expected a whole number, 1 or more, got {next_id!r}")
    if not isinstance(rows, list):
        raise ValueError(f"entries: expected a list, got {type(rows).__name__}")
    entries: dict[int, dict[str, Any]] = {}
    for n, record in enumerate(rows):
        where = f"entries[{n}]"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
        missing = [k for k in _STORED if k not in record]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        ident = record["ID"]
        if isinstance(ident, bool) or not isinstance(ident, int) or ident < 1:
            raise ValueError(f"{where}: ID must be a whole number, 1 or more, got {ident!r}")
        if ident in entries:
            raise ValueError(f"{where}: ID {ident} appears twice")
        try:
            _check_stored(record)
        except (_ApiError, ValueError, TypeError) as e:
            raise ValueError(f"entry {ident}: {e}") from None
        entries[ident] = record
    return entries, max([next_id, *(k + 1 for k in entries)])


# The stored form of a record: the fields every entry of a data file has.
_STORED = ("ID", "user", "from", "to", "notes", "manual", "breakMinutes", *_COORDINATES, "deleted")


def _check_stored(record: Mapping[str, Any]) -> None:
    """The checks a create applies, on a stored record; raises _ApiError or ValueError."""
    if not isinstance(record["user"], str) or not record["user"].strip():
        raise ValueError(f"user: expected a non-empty text, got {record['user']!r}")
    for name in ("deleted", "manual"):
        if not isinstance(record[name], bool):
            raise ValueError(f"{name}: expected true or false, got {record[name]!r}")
    if not isinstance(record["notes"], str):
        raise ValueError(f"notes: expected text, got {record['notes']!r}")
    # Timestamps, to after from, the break and the coordinates: on a copy, like an update.
    _apply_fields({**record}, {k: record[k] for k in ("from", "to", "breakMinutes", *_COORDINATES)}, _UPDATABLE)


# --------------------------------------------------------------------------
# Foreground server (the `kiosk emulator` command)


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    key: str,
    secret: str,
    data_path: str | os.PathLike[str] | None = None,
    users: Iterable[str] | None = None,
    faults: Faults | Mapping[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run an emulator in the foreground until SIGINT or SIGTERM.

    ``echo`` prints a start line with the URL and one line per created entry
    (pass ``click.echo``). The secret is never printed. Call from the main
    thread: signal handlers can only be installed there.
    """
    done = threading.Event()

    def created(entry: dict[str, Any]) -> None:
        echo(f"created #{entry['ID']} {entry['user']} {entry['from']} -> {entry['to']}"
             f" ({entry['workedMinutes']} min worked, {entry['breakMinutes']} min break)")

    emulator = Emulator(host, port, key=key, secret=secret, data_path=data_path,
                        users=users, faults=faults, on_create=created)
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        emulator.start()
        details = [f"data: {emulator.data_path}" if emulator.data_path else "data: in memory"]
        if emulator.users is not None:
            details.append(f"users: {', '.join(sorted(emulator.users)) or '(none)'}")
        active = emulator.faults().active()
        if active:
            details.append("faults: " + ", ".join(f"{k}={v}" for k, v in active.items()))
        echo(f"TimeTrack emulator at {emulator.url} ({'; '.join(details)}); Ctrl-C to stop")
        while not done.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("emulator stopped")
