"""A TLS front for tests: terminates TLS on loopback with a test certificate and relays to an upstream.

Like a reverse proxy in front of TimeTrack: the kiosk speaks verified TLS to
it, the emulator behind it answers. The certificates in ``tests/data/tls`` are
test-only and self-signed for 127.0.0.1 and localhost: ``selfsigned.pem``
(valid 2026-2126) and ``future.pem`` (not valid before 2099: what a Pi whose
clock is still in the past sees at boot).
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

TLS_DATA = Path(__file__).resolve().parent / "data" / "tls"


class TlsFront:
    """``with TlsFront("selfsigned", upstream=("127.0.0.1", emu.port)) as front: front.url``."""

    def __init__(self, cert: str = "selfsigned", upstream: tuple[str, int] | None = None):
        self.cert = TLS_DATA / f"{cert}.pem"
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, TLS_DATA / f"{cert}.key")
        self.upstream = upstream
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes_failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str = "/api/v2/ext") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> TlsFront:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            raw.close()
            return
        if self.upstream is None:
            conn.close()
            return
        up = socket.create_connection(self.upstream)
        threading.Thread(target=_pipe, args=(up, conn), daemon=True).start()
        _pipe(conn, up)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
