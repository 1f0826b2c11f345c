"""The tap path: parse, decide, commit durably, then signal. Never the network, never a lost tap.

:class:`TapDesk` is what the reader thread calls for each tap. The order is the
promise to the person at the door: the feedback comes only once the state
change is on disk (:meth:`kiosk.store.Store.record`, fsync), and a tap that
could not be recorded answers ERROR at once (and may be repeated at once: it
leaves no debounce memory). A pending ``kiosk enroll`` turns the next UNKNOWN
tap into ENROLLED.

    >>> desk = TapDesk(settings, store, clock, feedback,
    ...                on_recorded=lambda outcome, entry_id: None, on_store_error=print)   # doctest: +SKIP
    >>> desk.handle("04A1B2C3").kind                                                        # doctest: +SKIP
    <TapKind.CLOCK_IN: 'clock_in'>
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from kiosk import badges, config, readers, text
from kiosk.clock import Clock
from kiosk.exc import BadgeIdError, StoreError
from kiosk.feedback import Feedback
from kiosk.model import Stamp
from kiosk.rules import TapKind, TapOutcome, decide
from kiosk.store import Store

log = logging.getLogger("kiosk.daemon")

Raw = str | bytes | readers.Invalid


class TapDesk:
    """Turns reader input into recorded outcomes and feedback.

    ``on_recorded(outcome, entry_id)`` runs after each recorded tap (entry_id of a
    queued entry, or None); ``on_store_error(message)`` when the store refused
    one (a full disk, a deleted file). :attr:`clock_lock` spans stamp to commit:
    the daemon takes it to correct untrusted stamps between taps, never during one.
    """

    def __init__(self, settings: config.Settings, store: Store, clock: Clock, feedback: Feedback, *,
                 on_recorded: Callable[[TapOutcome, int | None], None],
                 on_store_error: Callable[[str], None]):
        self.settings, self.store, self.clock, self.feedback = settings, store, clock, feedback
        self.on_recorded, self.on_store_error = on_recorded, on_store_error
        self.clock_lock = threading.RLock()
        self.busy_since: float | None = None  # a tap in progress since (monotonic): the watchdog looks
        self.idle = threading.Event()  # set while no tap is in progress: delivery waits on it
        self.idle.set()
        self.unsaved_errors = 0  # ERROR taps the store could not count (the daemon counts them later)
        self._last_seen: dict[str, float] = {}  # badge -> monotonic time of its last recorded tap
        self._enrolling: str | None = None  # username a pending `kiosk enroll` waits for

    def handle(self, raw: Raw) -> TapOutcome:
        """One tap, from reader input to feedback; returns what it came to."""
        self.busy_since = time.monotonic()
        self.idle.clear()
        try:
            with self.clock_lock:
                return self._handle_stamped(raw, self.clock.stamp())
        finally:
            self.idle.set()
            self.busy_since = None

    def _handle_stamped(self, raw: Raw, stamp: Stamp) -> TapOutcome:
        mono = time.monotonic()
        try:
            uid = self._parse(raw)
        except BadgeIdError as exc:
            if isinstance(raw, readers.Invalid):
                shown = raw.shown
            else:
                shown = text.escape(raw.hex().upper() if isinstance(raw, bytes | bytearray) else raw, limit=64)
            outcome = TapOutcome(TapKind.INVALID, shown, stamp.at, message=text.escape(str(exc), limit=200))
            return self._commit(outcome, stamp)
        try:
            badge = self.store.badge(uid)
            opened = self.store.open_clock_in(badge.username) if badge else None
            last = self._last_seen.get(uid)
            outcome = decide(uid, badge, opened, None if last is None else mono - last, stamp, self.settings.rules)
        except Exception as exc:
            log.exception("cannot read the store for tap %s", uid)
            return self._error(TapOutcome(TapKind.ERROR, uid, stamp.at), f"store error: {exc}")
        if outcome.kind is TapKind.UNKNOWN and self._enrolment_pending():
            enrolled = self._enrol(outcome, stamp)
            if enrolled is not None:
                return enrolled  # no debounce memory: the badge's next tap clocks in
        outcome = self._commit(outcome, stamp)
        if outcome.kind is not TapKind.ERROR:  # a tap that was not recorded may be repeated at once
            self._last_seen[uid] = mono
        return outcome

    def _parse(self, raw: Raw) -> str:
        if isinstance(raw, readers.Invalid):  # the reader refused it already (e.g. too long)
            raise BadgeIdError(raw.reason)
        if isinstance(raw, bytes | bytearray):  # a hardware reader: UID bytes, nothing to guess
            return badges.from_bytes(raw)
        return badges.parse(raw, self.settings.badges.decimal_byte_order)

    def _commit(self, outcome: TapOutcome, stamp: Stamp) -> TapOutcome:
        name = self.settings.kiosk.name
        try:
            entry_id = self.store.record(outcome, stamp, notes=f"kiosk: {name}", kiosk=name)
        except Exception as exc:  # StoreError (disk full, file gone, busy) or a bug: never a dead reader
            if not isinstance(exc, StoreError):
                log.exception("cannot record tap %s (%s)", outcome.uid, outcome.kind)
            self.on_store_error(f"store error: {exc}")
            return self._error(outcome, f"not recorded: {exc}")
        self.feedback.show(outcome)  # only now: the tap is on disk
        log.info("tap %s %s %s%s", outcome.uid, outcome.kind, outcome.username or "-",
                 f" entry {entry_id}" if entry_id else "",
                 extra={"KIOSK_OUTCOME": str(outcome.kind), "KIOSK_BADGE": outcome.uid,
                        "KIOSK_USERNAME": outcome.username or "", "KIOSK_ENTRY_ID": entry_id or ""})
        if outcome.stale is not None:
            log.warning("flagged stale clock-in of %s since %s", outcome.stale.username, outcome.stale.since)
        if outcome.note:
            log.warning("entry %s of %s: %s", entry_id, outcome.username, outcome.note)
        self.on_recorded(outcome, entry_id)
        return outcome

    def _error(self, outcome: TapOutcome, message: str) -> TapOutcome:
        outcome = replace(outcome, kind=TapKind.ERROR, message=message)
        self.unsaved_errors += 1
        self.feedback.show(outcome)
        log.error("tap %s not recorded: %s", outcome.uid, message,
                  extra={"KIOSK_OUTCOME": "error", "KIOSK_BADGE": outcome.uid})
        return outcome

    # ------------------------------------------------------------ enrolment by tap

    def _enrol(self, outcome: TapOutcome, stamp: Stamp) -> TapOutcome | None:
        """A `kiosk enroll` waits: map this unknown badge to its user (None: no request after all)."""
        try:
            badge = self.store.enrol(outcome.uid, stamp.at)
        except Exception as exc:
            log.exception("cannot enrol badge %s", outcome.uid)
            return self._error(outcome, f"enrolment not recorded: {exc}")
        if badge is None:
            return None
        outcome = replace(outcome, kind=TapKind.ENROLLED, username=badge.username)
        self.feedback.show(outcome)
        log.info("tap %s enrolled for %s", outcome.uid, badge.username,
                 extra={"KIOSK_OUTCOME": "enrolled", "KIOSK_BADGE": outcome.uid, "KIOSK_USERNAME": badge.username})
        self.check_enrolment()
        self.on_recorded(outcome, None)
        return outcome

    def _enrolment_pending(self) -> bool:
        try:
            return self.store.enrolment() is not None
        except Exception:
            log.exception("cannot read the enrolment request")
            return False

    def check_enrolment(self) -> None:
        """Follow `kiosk enroll` requests; tell the feedback (its ``enrolling`` hook) when one starts or ends."""
        request = self.store.enrolment()
        username = request["username"] if request else None
        if username == self._enrolling:
            return
        self._enrolling = username
        try:
            self.feedback.enrolling(username)
        except Exception:
            log.exception("feedback enrolling hook failed")
