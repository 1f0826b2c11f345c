"""A raw HTTP server in a thread that answers every request with whatever bytes it is told to.

For fuzzing the API client and the daemon with answers no well-behaved
server (the emulator included) would send: any status, any headers, bodies
that lie about their length, bytes that are not HTTP at all. Each request is
read (head and ``Content-Length`` body), answered with ``answer()``'s bytes,
and the connection closed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class RawServer:
    """``with RawServer(lambda: b"HTTP/1.1 200 OK\\r\\n\\r\\n") as srv: srv.url``."""

    def __init__(self, answer: Callable[[], bytes]):
        self.answer = answer
        self.requests = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/api/v2/ext"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip() or 0)
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.requests += 1
                conn.sendall(self.answer())
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
