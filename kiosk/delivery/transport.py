"""HTTP exchanges with hard limits: a total deadline, a capped body, no retries, sockets that can be cut.

Why this exists: requests' ``timeout=(connect, read)`` bounds each socket
read, not the request. A server (or a middlebox) that sends one byte every few
seconds holds a plain requests call forever, and a body of any size is read
into memory whole. Here:

- **Deadline.** Each exchange (DNS, connect, TLS, send, the status line, the
  headers and the whole body) runs on the transport's helper thread, which
  owns the requests session; the caller waits at most ``deadline`` seconds and
  then gets :class:`DeadlineExceeded`, whatever the server does. The abandoned
  exchange's sockets are shut down at once (the connection classes below
  register each socket as it is made or reused), so the helper returns within
  moments; it retires with its session and a fresh helper serves the next
  request. :meth:`Transport.abort` does the same from another thread (the
  sender stopping on SIGTERM). Only a DNS lookup cannot be cut short; the
  caller does not wait for it either.
- **Body cap.** Answers are read streamed, ``BODY_LIMIT`` (1 MiB) at most: a
  larger ``Content-Length`` is refused before reading, a longer body as soon
  as it passes the cap (:class:`BodyTooLarge`); nothing larger is ever held.
  ``Accept-Encoding: identity`` keeps decompression bombs out.
- **No retries.** urllib3 never re-sends anything by itself (``Retry(total=0)``):
  a slow server was seen to receive the same POST three times. Retries happen
  in the sender, where the duplicate check lives.

Each :class:`Answer` also carries when the request left and when its head
arrived (``CLOCK_BOOTTIME``), which turns the server's ``Date`` header into
evidence of the true time (see :mod:`kiosk.clock`).

    >>> t = Transport(headers={}, verify=True, proxies={}, timeout=(5, 15), deadline=30)  # doctest: +SKIP
    >>> t.request("GET", "https://tt.example/api/v2/ext/attendances", params={"limit": 1}).status  # doctest: +SKIP
    200
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import pool_classes_by_scheme as URLLIB3_POOLS
from urllib3.util.retry import Retry

BODY_LIMIT = 1 << 20  # bytes of an answer body ever read
READ_CHUNK = 16384
IDLE_SECONDS = 60.0  # an idle helper thread ends after this long (a new one starts on demand)


class TransportError(Exception):
    """An exchange ended without a usable answer for a reason of the transport's own."""


class DeadlineExceeded(TransportError):
    """No complete answer within the deadline (the exchange was abandoned and its sockets cut)."""

    def __init__(self, seconds: float):
        super().__init__(f"no complete answer within {seconds:g}s")
        self.seconds = seconds


class BodyTooLarge(TransportError):
    """The answer's body is larger than the cap; it was not read."""

    def __init__(self, status: int, limit: int):
        super().__init__(f"HTTP {status}: answer body larger than {limit} bytes")
        self.status, self.limit = status, limit


class Aborted(TransportError):
    """The exchange was abandoned by :meth:`Transport.abort` (the sender is stopping)."""


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer. ``sent``/``received``: ``CLOCK_BOOTTIME`` when the request
    started and when the status line and headers had arrived."""

    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    sent: float = 0.0
    received: float = 0.0


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def no_retries() -> Retry:
    """total=0 and every counter 0: urllib3 never re-sends anything, least of all a POST."""
    return Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                 raise_on_redirect=False, raise_on_status=False)


# ---------------------------------------------------------------- sockets that can be cut

_local = threading.local()


class _Exchange:
    """One request on its way: the sockets it uses, and whether the caller gave up on it."""

    def __init__(self, work: Callable[[requests.Session], Answer]):
        self.work = work
        self.done = threading.Event()
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        self.aborted = False
        self.abandoned = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.abandoned:
                self._sockets.append(sock)
                return
        _cut(sock)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _cut(sock)


def _cut(sock: socket.socket) -> None:
    """shutdown() ends a blocked recv/send in another thread at once (close() would not)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _watch(sock: socket.socket | None) -> None:
    exchange = getattr(_local, "exchange", None)
    if exchange is not None and sock is not None:
        exchange.watch(sock)


class _Watched:
    """Registers its socket with the exchange in hand: when made (before TLS) and on each reuse."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # None on a fresh connection: _new_conn registers it
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _Adapter(HTTPAdapter):
    """No retries, and pools whose connections register their sockets (direct and through HTTP proxies)."""

    def __init__(self) -> None:
        super().__init__(max_retries=no_retries())

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any):
        manager = super().proxy_manager_for(proxy, **kwargs)
        if manager.pool_classes_by_scheme is URLLIB3_POOLS:  # not SOCKS (its own pools)
            manager.pool_classes_by_scheme = _POOLS
        return manager


# ---------------------------------------------------------------- the transport


class _Helper:
    """The thread that runs exchanges on its own session, one at a time."""

    def __init__(self, make_session: Callable[[], requests.Session], lock: threading.Lock):
        self.jobs: queue.SimpleQueue[_Exchange | None] = queue.SimpleQueue()
        self.ending = False
        self._make_session, self._lock = make_session, lock
        threading.Thread(target=self._run, name="kiosk-http", daemon=True).start()

    def _run(self) -> None:
        session = self._make_session()
        try:
            while True:
                try:
                    exchange = self.jobs.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    with self._lock:  # the transport submits under this lock: no job is lost
                        if self.jobs.empty():
                            self.ending = True
                            return
                    continue
                if exchange is None:
                    return
                _local.exchange = exchange
                try:
                    exchange.answer = exchange.work(session)
                except BaseException as exc:  # handed to the caller, who classifies it
                    exchange.error = exc
                finally:
                    _local.exchange = None
                    exchange.done.set()
                if exchange.abandoned:  # the session may hold a half-read connection
                    return
        finally:
            session.close()


class Transport:
    """HTTP requests with a total deadline and a body cap. One caller thread at a time;
    :meth:`abort` may come from any thread."""

    def __init__(self, *, headers: Mapping[str, str], verify: bool | str, proxies: Mapping[str, str],
                 timeout: tuple[float, float], deadline: float, body_limit: int = BODY_LIMIT):
        self.headers = {**headers, "Accept-Encoding": "identity"}
        self.verify, self.proxies = verify, dict(proxies)
        self.timeout, self.deadline, self.body_limit = timeout, deadline, body_limit
        self._lock = threading.Lock()
        self._helper: _Helper | None = None
        self._current: _Exchange | None = None
        self._closed = False

    def session(self) -> requests.Session:
        """A session as every helper gets it (also what tests inspect)."""
        s = requests.Session()
        s.trust_env = False  # the environment was read once (proxies, CA); also keeps ~/.netrc out
        s.proxies.update(self.proxies)
        adapter = _Adapter()
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        s.headers.update(self.headers)
        s.verify = self.verify
        return s

    def request(self, method: str, url: str, **kwargs: Any) -> Answer:
        """One exchange: the answer, or an exception (requests', or a :class:`TransportError`)."""
        exchange = _Exchange(lambda session: self._exchange(session, method, url, kwargs))
        with self._lock:
            if self._closed:
                raise Aborted("the transport is closed")
            if self._helper is None or self._helper.ending:
                self._helper = _Helper(self.session, self._lock)
            helper = self._helper
            self._current = exchange
            helper.jobs.put(exchange)
        try:
            finished = exchange.done.wait(self.deadline)
        finally:
            with self._lock:
                self._current = None
        if exchange.aborted or not finished:
            exchange.abandon()
            self._retire(helper)
            if exchange.aborted:
                raise Aborted("request abandoned")
            raise DeadlineExceeded(self.deadline)
        if exchange.error is not None:
            raise exchange.error
        assert exchange.answer is not None
        return exchange.answer

    def abort(self) -> None:
        """Abandon the exchange in hand (if any) now: its caller gets :class:`Aborted`."""
        with self._lock:
            exchange = self._current
        if exchange is not None:
            exchange.aborted = True
            exchange.abandon()
            exchange.done.set()

    def close(self) -> None:
        """End the helper thread (after the exchange in hand) and refuse further requests."""
        with self._lock:
            self._closed = True
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.jobs.put(None)

    def _retire(self, helper: _Helper) -> None:
        with self._lock:
            if self._helper is helper:
                self._helper = None
        helper.jobs.put(None)

    def _exchange(self, session: requests.Session, method: str, url: str, kwargs: dict) -> Answer:
        sent = boottime()
        resp = session.request(method, url, timeout=self.timeout, allow_redirects=False, stream=True, **kwargs)
        received = boottime()
        try:
            length = resp.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > self.body_limit:
                raise BodyTooLarge(resp.status_code, self.body_limit)
            chunks, size = [], 0
            for chunk in resp.iter_content(READ_CHUNK):
                size += len(chunk)
                if size > self.body_limit:
                    raise BodyTooLarge(resp.status_code, self.body_limit)
                chunks.append(chunk)
        finally:
            resp.close()  # a fully read answer gives its connection back to the pool; any other closes it
        return Answer(resp.status_code, resp.reason or "", resp.headers, b"".join(chunks), sent, received)
