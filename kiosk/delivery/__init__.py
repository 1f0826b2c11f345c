"""Delivery of queued attendance entries to TimeTrack, behind real networks.

Where each concern lives:

- :mod:`~kiosk.delivery.transport`: one HTTP exchange with hard limits (a total
  deadline, a 1 MiB body cap, no retries, sockets cut on abort);
- :mod:`~kiosk.delivery.answers`: what an answer or a failure means
  (:class:`SendOutcome`, a typed :class:`Cause`; ambiguity by default; a 2xx
  counts only when it looks like TimeTrack; the server's words made safe);
- :mod:`~kiosk.delivery.client`: the TimeTrack requests (create, lookup, probe);
- :mod:`~kiosk.delivery.policy`: the states and the pure retry/backoff/pause decisions;
- :mod:`~kiosk.delivery.schedule`: per-entry waits (bounded) and the in-flight journal;
- :mod:`~kiosk.delivery.rounds`: one round over the queue, for the thread and ``flush()``;
- :mod:`~kiosk.delivery.status`: the published status; :mod:`~kiosk.delivery.lock`: one sender at a time;
- :mod:`~kiosk.delivery.sender`: the worker (:class:`Sender`).

    >>> from kiosk.delivery import Sender
    >>> Sender(store, settings.api).flush()["remaining"]      # doctest: +SKIP
    0
"""

from kiosk.delivery.answers import Cause, SendOutcome, SendResult
from kiosk.delivery.client import LookupFailed, TimeTrackClient
from kiosk.delivery.policy import State
from kiosk.delivery.sender import Sender

__all__ = ["Cause", "LookupFailed", "SendOutcome", "SendResult", "Sender", "State", "TimeTrackClient"]
