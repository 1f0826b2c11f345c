"""The composition root: the one place where the kiosk's parts are built from the settings.

    >>> daemon = build(config.load("/etc/kiosk/kiosk.toml"))     # doctest: +SKIP
    >>> sys.exit(daemon.run())

Tests, the demo and benchmarks pass their own parts (a stdin reader, console
feedback, a store in a temporary directory): every part given is used as is,
every part missing is built here. If building one part fails (a reader that
is not there: :class:`~kiosk.exc.HardwareError`), the parts built so far are
closed again before the error goes up. Nothing here imports :mod:`kiosk.sim`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kiosk import config, feedback as feedback_mod, readers
from kiosk.metrics import MetricsWriter
from kiosk.clock import Clock
from kiosk.daemon import Daemon
from kiosk.delivery.sender import Sender
from kiosk.feedback import Feedback
from kiosk.readers import Reader
from kiosk.store import Store


def build(settings: config.Settings, *, store: Store | None = None, clock: Clock | None = None,
          sender: Sender | None = None, reader: Reader | None = None, feedback: Feedback | None = None,
          **daemon_options: Any) -> Daemon:
    """A :class:`~kiosk.daemon.Daemon` with every part built from ``settings`` unless given.

    The sender gets a store connection of its own, so that reading the queue
    never waits on a tap's transaction in this process, nor a tap on it.
    ``daemon_options`` go to :class:`~kiosk.daemon.Daemon` (``tick``, ``drain_seconds``).
    """
    with contextlib.ExitStack() as undo:
        built_clock = clock is None
        clock = clock or Clock.from_settings(settings.clock)
        if store is None:
            store = Store(settings.store_path, create=True)
            undo.callback(store.close)
        if built_clock:  # TimeTrack's time as measured before a restart in this boot, if any
            clock.restore((store.status_value("clock") or {}).get("sample"))
        if sender is None:
            sender_store = Store(settings.store_path, create=False)
            undo.callback(sender_store.close)
            sender = Sender(sender_store, settings.api, clock=clock)  # one Clock: the sender feeds it
        if reader is None:
            reader = readers.create(settings.reader)
            undo.callback(reader.close)
        if feedback is None:
            feedback = feedback_mod.create(settings)
            undo.callback(feedback.close)
        metrics = MetricsWriter(settings.metrics.textfile) if settings.metrics.textfile else None
        daemon = Daemon(settings, store=store, clock=clock, sender=sender, reader=reader, feedback=feedback,
                        metrics=metrics, **daemon_options)
        undo.pop_all()
    return daemon
