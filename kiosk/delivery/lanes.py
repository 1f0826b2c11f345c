"""Requests side by side: a second exchange on the wire while the sender records the first one's answer.

A loopback POST to TimeTrack's emulator takes about as long on the wire as the
kiosk spends recording its answer (classifying it, the store's bookkeeping): done
one after the other, a week's backlog drains at about 0.8 of a bare requests
loop. With two lanes, the next entry is already on its way while the answer
before it is recorded. Nothing else changes: the batch is in the in-flight
journal before its first request (a crash leaves every entry of it to be looked
up), and the answers are still recorded one at a time, in queue order, by the
sender's own thread (:mod:`kiosk.delivery.rounds`).

Each lane is a thread of its own with a client of its own (a requests session is
not thread-safe); :meth:`Lanes.abort` abandons every lane's request in hand.

    >>> lanes = Lanes(lambda: TimeTrackClient(api))          # doctest: +SKIP
    >>> future = lanes.submit(lambda client, entry: client.create(entry), entry)
    >>> future.result().outcome
    <SendOutcome.DELIVERED: 'delivered'>
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

WIDTH = 2  # exchanges in flight at once: enough to hide the recording; gentle on any server


class Lanes:
    """``width`` threads, each with a client that ``make_client()`` builds on first use."""

    def __init__(self, make_client: Callable[[], Any], width: int = WIDTH):
        self.width = width
        self._make_client = make_client
        self._pool = ThreadPoolExecutor(width, thread_name_prefix="kiosk-lane")
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, work: Callable[[Any, Any], Any], item: Any) -> Future:
        """Run ``work(client, item)`` on a lane; its result (or exception) through the future."""
        return self._pool.submit(self._run, work, item)

    def _run(self, work: Callable[[Any, Any], Any], item: Any) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._make_client()
            with self._lock:
                self._clients.append(client)
                closed = self._closed
            self._local.client = client
            if closed:
                client.abort()
        return work(client, item)

    def abort(self) -> None:
        """From any thread: abandon every lane's request in hand and refuse further ones."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
        for client in clients:
            client.abort()

    def close(self) -> None:
        """Let the requests in hand finish, then close every lane's client."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in clients:
            client.close()
