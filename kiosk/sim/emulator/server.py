"""The emulator as an object (:class:`Emulator`, on a background thread) and as
a foreground process (:func:`serve`, what ``kiosk emulator`` runs).

It ties the parts together: the entries (model.py), the data file
(persistence.py), the fault decisions (faults.py) and the HTTP handler
(handler.py) behind a listening socket (:class:`Server`), and offers what
tests and benchmarks need around them: start, stop and restart on the same
port, fault switching, statistics.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import socketserver
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .faults import Dice, Faults
from .handler import API_PREFIX, Handler, cut
from .model import Attendances
from .persistence import DataFile

log = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    """The listening socket of one :class:`Emulator` start, one thread per connection."""

    daemon_threads = True
    block_on_close = False  # stop() closes connections itself; never wait on an idle keep-alive
    # Connections are accepted by the serving thread at once, whatever the faults do
    # later; a deep backlog keeps a burst of clients (a benchmark) from waiting on SYN retries.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.closing = False  # set by Emulator.stop(); connections accepted after that are cut at once
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log instead of socketserver's traceback on stderr; a client that hung up is normal here."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.exception("error while handling a request from %s", client_address)

    def server_bind(self) -> None:
        """Bind without HTTPServer's FQDN lookup, which can stall for seconds without DNS."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class Emulator:
    """A TimeTrack attendance API on a background thread.

    ``port=0`` picks a free port; after a ``stop()``, ``start()`` binds the same
    port again so that clients configured with :attr:`url` keep working (a
    server restart). With ``data_path`` every acknowledged change is on disk
    (temp file, fsync, rename) before the answer is sent, and the file is read
    again at each start; ``start()`` raises ValueError, and serves nothing, when
    that file is not an emulator data file or its directory is missing or not
    writable. ``users``, when given, is the account's user list: creates for
    anyone else are refused (a permanent rejection). ``faults``: a
    :class:`Faults` or its fields as a dict. ``on_create(entry)`` is called
    from the handler thread with each new entry; its exceptions are logged,
    never sent to the client.

        >>> import requests
        >>> with Emulator(key="k", secret="s", faults={"gateway_error": 1.0}) as emu:
        ...     r = requests.post(emu.url + "/attendances", timeout=5,
        ...                       headers={"X-TimeTrack-Api-Key": "k", "X-TimeTrack-Api-Secret": "s"},
        ...                       json={"username": "anna", "from": "2020-10-17T10:00:00Z",
        ...                             "to": "2020-10-17T14:00:00Z"})
        ...     r.status_code in (502, 503, 504), len(emu.entries())
        (True, 1)

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
        self._lock = threading.RLock()
        self._data = DataFile(self.data_path) if self.data_path is not None else None
        #: The entries (the data model); its methods are what the API routes call.
        self.attendances = Attendances(users=users, durable=self._data, lock=self._lock)
        self.on_create = on_create
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._credentials = ("", "")
        self.dice = Dice()
        self.set_credentials(key, secret)
        self.set_faults(faults)
        self._reset_stats()

    @property
    def users(self) -> frozenset[str] | None:
        """The account's usernames (None: any is accepted)."""
        return self.attendances.users

    @property
    def on_create(self) -> Callable[[dict[str, Any]], None] | None:
        """Called with each new entry (API form) after it is stored; may be replaced at any time."""
        return self.attendances.on_create

    @on_create.setter
    def on_create(self, callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.attendances.on_create = callback

    # -- lifecycle

    def start(self) -> Emulator:
        """Load the data file (if any), bind and serve in a daemon thread."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("emulator already started")
            if self._data is not None:
                self._data.check_dir()
                self.attendances.replace(*self._data.load())
            self._stopping.clear()
            server = Server((self.host, self.port), self)
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
            cut(conn)
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
        """Whether it is serving now."""
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
        return f"<Emulator {where} entries={self.attendances.live_count()}>"

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
        (``set_faults()`` switches every fault off). Restarts the seed and the budget.

            >>> emu = Emulator(key="k", secret="s")
            >>> emu.set_faults(captive_portal="redirect", max_faults=3).active()
            {'captive_portal': 'redirect', 'max_faults': 3}
        """
        if faults is not None and kw:
            raise TypeError("pass a Faults object or keyword arguments, not both")
        if not isinstance(faults, Faults):
            faults = Faults.from_dict(faults if faults is not None else kw)
        self.dice.set(faults)
        if faults.active():
            log.info("faults: %s", faults.active())
        return faults

    def faults(self) -> Faults:
        """The current settings (immutable: change them with :meth:`set_faults`)."""
        return self.dice.faults

    # -- inspection

    def entries(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """A copy of the stored entries in API form, plus a ``deleted`` flag, by ID."""
        return self.attendances.all(include_deleted)

    def stats(self) -> dict[str, Any]:
        """Counts of API requests (admin and portal-page requests excluded): by method,
        by status ("dropped": no answer), creates, and each fault by the times it struck."""
        with self._lock:
            return {
                "requests": sum(self._by_method.values()),
                "by_method": dict(self._by_method),
                "by_status": dict(self._by_status),
                "creates": self.attendances.creates,
                "faults": self.dice.fired(),
                "faults_remaining": self.dice.remaining(),
            }

    def reset(self) -> None:
        """Forget every entry (on disk too) and the statistics; faults stay as set."""
        with self._lock:
            self.attendances.clear()
            self._reset_stats()

    # -- internals used by the handler

    def _reset_stats(self) -> None:
        with self._lock:
            self._by_method: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self.dice.clear_counts()

    def _track(self, server: Server, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if not open_:
                self._connections.discard(conn)
            elif server.closing:  # accepted just before stop(): never serve it
                cut(conn)
            else:
                self._connections.add(conn)

    def _count(self, method: str, status: int | str) -> None:
        with self._lock:
            self._by_method[method] += 1
            self._by_status[str(status)] += 1


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

    ``echo`` prints a start line with the URL (with the real port when
    ``port`` is 0) and one line per created entry (pass ``click.echo``); the
    start line's format is stable, scripts read the URL from its 4th word::

        TimeTrack emulator at http://127.0.0.1:40123/api/v2/ext (data: in memory); Ctrl-C to stop

    The secret is never printed. Call from the main thread: signal handlers
    can only be installed there.
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
