"""The local store: the only package that touches SQLite (through sqlitedict).

:class:`Store` is one open store file; its methods come in rooms:
:mod:`~kiosk.store.db` (transactions, paged reads, schema, identity),
:mod:`~kiosk.store.taps` (badges, open clock-ins, the tap transaction, clock
correction), :mod:`~kiosk.store.outbox` (queued, held, delivered and rejected
entries), :mod:`~kiosk.store.admin` (badge lifecycle, import, enrolment by
tap), :mod:`~kiosk.store.review` (open clock-ins, flagged and rejected entries,
audit queries), :mod:`~kiosk.store.backup` (online backups) and this module
(status records, summary). :mod:`~kiosk.store.presence` says whether a daemon
runs on a store; :class:`EmptyStore` stands in for a store not created yet.

    >>> with Store("/var/lib/kiosk/kiosk.sqlite", create=False) as store:   # doctest: +SKIP
    ...     store.badge("04A1B2C3")
    ...     store.summary()["outbox"]
    Badge(uid='04A1B2C3', username='anna', ...)
    0

Every method is one transaction, so the daemon and ``kiosk`` commands in
other processes can use the same file at the same time.
"""

from __future__ import annotations

from typing import Any

from kiosk.model import AuditLine, FlaggedRecord
from kiosk.store import presence
from kiosk.store.admin import AdminRecords
from kiosk.store.backup import BackupRecords
from kiosk.store.db import PAGE, SCHEMA_VERSION, STORE_NAME, Database, key
from kiosk.store.outbox import OutboxRecords
from kiosk.store.review import ReviewRecords
from kiosk.store.taps import TapRecords

__all__ = ["PAGE", "SCHEMA_VERSION", "STORE_NAME", "EmptyStore", "Store"]


class Store(AdminRecords, ReviewRecords, BackupRecords, TapRecords, OutboxRecords, Database):
    """Typed access to the kiosk's records. Thread-safe; safe beside other processes."""

    # ------------------------------------------------------------ review and audit

    def flagged(self) -> list[FlaggedRecord]:
        """Open clock-ins and entries set aside for review, oldest first."""
        return list(self._typed(FlaggedRecord, self._walk("flagged")))

    def flagged_count(self) -> int:
        return self._count("flagged")

    def audit(self, limit: int | None = None) -> list[AuditLine]:
        """Audit lines, newest first."""
        return list(self._typed(AuditLine, self._page("audit", reverse=True, limit=limit)))

    # ------------------------------------------------------------ status records

    def set_status(self, name: str, value: Any) -> None:
        """Daemon facts for ``kiosk status`` (last error, sender state), shared across processes."""
        with self.transaction() as db:
            db[key("status", name)] = value

    def status_value(self, name: str, default=None):
        return self._get(key("status", name), default)

    def summary(self) -> dict:
        """Everything ``kiosk status`` shows, as JSON-ready values."""
        oldest = self.oldest_queued()
        return {
            "open": [o.to_record() for o in self.open_clock_ins()],
            "outbox": self.outbox_count(),
            "held": self.held_count(),
            "oldest_queued_at": oldest.to_record()["queued_at"] if oldest else None,
            "rejected": self.rejected_count(),
            "flagged": self.flagged_count(),
            "last_delivery": self.status_value("last_delivery"),
            "last_error": self.status_value("last_error"),
            "sender": self.status_value("sender"),
            "reader": self.status_value("reader"),
            "feedback": self.status_value("feedback"),  # a feedback device's health (the display)
            "daemon": presence.daemon_state(self.path).to_record(),
        }


from kiosk.store.empty import EmptyStore  # noqa: E402 - it mirrors Store's reading methods
