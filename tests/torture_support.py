"""How hard the torture tests push: bounded in ``make test``, full with ``pytest -m torture --torture-long``.

``tests/conftest.py`` sets :data:`LONG` from the ``--torture-long`` option
before the test modules are imported, so sizes and hypothesis example counts
can be chosen at import time: ``scale(bounded, long)``.
"""

from __future__ import annotations

LONG = False


def scale(bounded: int, long: int) -> int:
    """``long`` under ``--torture-long``, else ``bounded``."""
    return long if LONG else bounded
