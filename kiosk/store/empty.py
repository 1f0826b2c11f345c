"""A store that does not exist yet, read as an empty kiosk.

On a fresh install ``kiosk status`` and ``kiosk badge list`` should show an
empty kiosk, not fail, and must not create the store as a side effect (only the
first ``badge add``/``import`` and the daemon do that). :class:`EmptyStore`
answers every reading method of :class:`~kiosk.store.Store` as an empty store
would (a test holds the two side by side); anything else raises the
:class:`~kiosk.exc.StoreMissing` that opening the store raised.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kiosk.exc import StoreMissing
from kiosk.store import presence


class EmptyStore:
    """Stands in for the missing store at ``path``; ``missing`` is the error opening it gave."""

    created = False
    actor: str | None = None

    def __init__(self, path: str | os.PathLike, missing: StoreMissing):
        self.path = Path(path)
        self.missing = missing

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # a write, or a read not mirrored here
        raise self.missing

    # ------------------------------------------------------------ the reading methods of Store

    def badge(self, uid: str) -> None:
        return None

    def badges(self) -> list:
        return []

    def iter_badges(self) -> Iterator:
        return iter(())

    def badge_count(self) -> int:
        return 0

    def open_clock_in(self, username: str) -> None:
        return None

    def open_clock_ins(self) -> list:
        return []

    def flagged(self) -> list:
        return []

    def iter_flagged(self) -> Iterator:
        return iter(())

    def flagged_entry(self, flag_id: int) -> None:
        return None

    def flagged_count(self) -> int:
        return 0

    def rejected(self) -> list:
        return []

    def iter_rejected(self) -> Iterator:
        return iter(())

    def rejected_entry(self, entry_id: int) -> None:
        return None

    def rejected_count(self) -> int:
        return 0

    def rejected_of_badge(self, uid: str, username: str | None = None) -> list:
        return []

    def outbox(self, limit: int | None = None) -> list:
        return []

    def iter_outbox_records(self) -> Iterator:
        return iter(())

    def iter_rejected_records(self) -> Iterator:
        return iter(())

    def iter_outbox(self) -> Iterator:
        return iter(())

    def outbox_entry(self, entry_id: int) -> None:
        return None

    def outbox_count(self) -> int:
        return 0

    def held_count(self) -> int:
        return 0

    def oldest_queued(self) -> None:
        return None

    def audit(self, limit: int | None = None) -> list:
        return []

    def audit_lines(self, **filters) -> Iterator:
        return iter(())

    def audit_count(self) -> int:
        return 0

    def counters(self) -> dict:
        return {}

    def nudges(self) -> int:
        return 0

    def enrolment(self) -> None:
        return None

    def status_value(self, name: str, default=None):
        return default

    def describe_store(self) -> dict[str, int]:
        return {k: 0 for k in ("badges", "open", "queued", "held", "rejected", "flagged", "delivered", "audit")}

    def summary(self) -> dict:
        return {"open": [], "outbox": 0, "held": 0, "oldest_queued_at": None, "rejected": 0, "flagged": 0,
                "last_delivery": None, "last_error": None, "sender": None, "reader": None, "feedback": None,
                "daemon": presence.daemon_state(self.path).to_record()}
