"""A TimeTrack attendance API server for demos, tests, benchmarks and site checks.

It follows the project's notes on TimeTrack's public API docs (timetrack-api.md)
and accepts every reading the docs allow where they contradict themselves, so
a client that works here only relies on what the docs promise. Where the
emulator is stricter than the real service is likely to be (unknown fields and
query parameters are refused), it is to catch client typos that the real
service would silently ignore.

It also injects the failures a kiosk meets in the field, on demand and
switchable while running: latency, 5xx, 429, 401, connections dropped before
or after the entry was stored, slow and dribbled answers, a proxy that
forwards and then fails, a captive portal, oversized bodies, error pages that
echo the request headers, a server clock that is off. With a data file it
survives ``kill -9`` with everything it acknowledged: the sender's "nothing
lost, nothing twice" guarantees are tested against it over real HTTP.

Where each concern lives:

- ``model.py``: entries, validation, field aliases, filters and paging;
- ``persistence.py``: the ``--data`` file;
- ``faults.py``: the fault settings and the per-request decisions;
- ``answers.py``: what goes back, the emulator's own answers and the pages
  proxies and portals send instead;
- ``handler.py``: HTTP routes, authentication and the bytes on the wire;
- ``server.py``: the listening socket, :class:`Emulator` (background
  thread) and :func:`serve` (the ``kiosk emulator`` process).

    >>> from kiosk.sim.emulator import Emulator
    >>> with Emulator(key="k", secret="s") as emu:
    ...     emu.url.endswith("/api/v2/ext")
    True
"""

from .answers import PORTAL_PATH
from .faults import Faults
from .handler import ADMIN_PREFIX, API_PREFIX, KEY_HEADER, SECRET_HEADER
from .model import CODE_DELETED
from .persistence import DATA_FORMAT
from .server import Emulator, serve

__all__ = [
    "API_PREFIX",
    "ADMIN_PREFIX",
    "CODE_DELETED",
    "DATA_FORMAT",
    "KEY_HEADER",
    "PORTAL_PATH",
    "SECRET_HEADER",
    "Emulator",
    "Faults",
    "serve",
]
