"""One delivery round over the queue: the function that both ``flush()`` and the thread run.

A round reads the queue a page at a time (oldest first), picks the entries
that may be tried (the thread: those the :class:`~kiosk.delivery.schedule.Schedule`
finds due; ``flush()``: every entry but ambiguous ones still settling), and
for each one: looks it up first if it is ambiguous, else POSTs it; asks the
:class:`~kiosk.delivery.policy.Policy` what the result means; records that in
the store. It stops at the first failure that concerns every entry, and
returns a :class:`Report`; the caller (thread or flush) decides what the
report's ``stop`` means for it.

Guarantees, and where they are kept here:

- Nothing lost: an entry leaves the queue only by ``mark_delivered_many`` (the
  server confirmed it, or a lookup found it there) or ``reject`` (refused for
  good, kept in the rejected list).
- Nothing sent twice: a batch's ids go to the in-flight journal before its
  first POST (:class:`~kiosk.delivery.schedule.Journal`); an ambiguous entry
  is looked up before any re-send and never POSTed while the lookup fails;
  confirmed deliveries may wait ``MARK_DELAY`` to be saved together, and are
  kept (and stay in the journal) if saving fails.
- One bad entry never blocks the others: each has its own backoff.
- Memory and each store read stay bounded by a page, whatever the queue size.
- Taps first: with :attr:`Courier.give_way` set (the daemon's "no tap in
  progress" event), the round waits while a tap is handled before its next
  request, answer or transaction, so a tap never shares the CPU with a drain
  in this process (bounded by ``GIVE_WAY_MAX``, so a hung tap cannot stop delivery).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kiosk import clock as clk
from kiosk.delivery.answers import Cause, SendOutcome, SendResult
from kiosk.delivery.client import LookupFailed, TimeTrackClient
from kiosk.delivery.policy import Action, Pause, Policy, State, Verdict
from kiosk.delivery.schedule import Journal, Schedule, settle_left
from kiosk.delivery.status import StatusBoard, wall
from kiosk.model import OutboxEntry

log = logging.getLogger("kiosk.delivery")

BATCH = 64  # entries per page and per in-flight record
MARK_DELAY = 0.25  # seconds a confirmed delivery may wait to be committed with others
GIVE_WAY_MAX = 1.0  # seconds the round waits at most for a tap in progress

Progress = Callable[[OutboxEntry, SendResult], None]


@dataclass
class Stop:
    """Why a round stopped early: everything waits in ``state``."""

    state: State
    message: str
    at_least: float | None = None


@dataclass
class Report:
    """What a round did. ``summary()`` is what :meth:`Sender.flush` returns."""

    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    waiting: int = 0  # ambiguous entries still settling (flush)
    held: int = 0  # entries waiting for a trusted clock
    remaining: int = 0  # still queued after the round (flush)
    queued: int = 0  # sendable entries the round saw
    sent_any: bool = False
    next_due: float | None = None  # monotonic time the earliest waiting entry is due (thread)
    error: str | None = None  # the last failure's message
    stop: Stop | None = None
    pause: Pause = field(default_factory=Pause)  # the breaker's count after the round

    def summary(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "rejected": self.rejected, "failed": self.failed,
                "remaining": self.remaining, "held": self.held, "waiting": self.waiting,
                "state": self.stop.state.value if self.stop else State.IDLE.value,
                "error": self.stop.message if self.stop else self.error}


class Courier:
    """Runs rounds for one sender: holds the schedule, the journal and confirmed marks between rounds."""

    def __init__(self, store, policy: Policy, board: StatusBoard, *,
                 monotonic: Callable[[], float] = time.monotonic):
        self.store = store
        self.policy = policy
        self.board = board
        self.schedule = Schedule()
        self.journal = Journal(store)
        self.monotonic = monotonic
        self._marks: list[tuple[int, Any]] = []  # confirmed, not yet committed
        self._marks_since = 0.0
        self._journal_open = False  # the in-flight record names the last batch (cleared with its marks)
        self._flowing = False  # the last answer was a delivery: requests may go side by side
        self.give_way: threading.Event | None = None  # set while no tap is in progress (the daemon's)

    def _yield_to_taps(self) -> None:
        """Wait while a tap is handled: its few milliseconds go to the person at the door."""
        gate = self.give_way
        if gate is not None and not gate.is_set():
            gate.wait(GIVE_WAY_MAX)

    # ------------------------------------------------------------ the round

    def run(self, client: TimeTrackClient, pause: Pause, *, flush: bool, stopping: Callable[[], bool] = lambda: False,
            progress: Progress | None = None) -> Report:
        """One round; the caller holds the outbox lock. ``pause``: the breaker's count so far."""
        report = Report(pause=pause)
        self._flowing = False
        self._recover()
        now, wall_now = self.monotonic(), clk.utcnow()
        settle = self.policy.timing.settle
        horizon = max(self.policy.timing.backoff_max, settle)
        after = 0
        try:
            while report.stop is None:
                page = self.store.queued(after=after, limit=BATCH)
                if not page:
                    break
                after = page[-1].id
                report.queued += len(page)
                due = []
                for entry in page:
                    if flush:
                        if settle_left(entry, wall_now, settle) > 0:
                            report.waiting += 1
                        else:
                            due.append(entry)
                        continue
                    at = self.schedule.due_at(entry, now, wall_now, settle=settle, horizon=horizon)
                    if at <= now:
                        due.append(entry)
                    else:
                        report.next_due = at if report.next_due is None else min(report.next_due, at)
                if not due:
                    continue
                if not flush and not report.sent_any and not self.board.problem:
                    self.board.publish(State.SENDING)  # after trouble, "sending" waits for a success
                report.sent_any = True
                if self._send_batch(client, due, report, flush=flush, stopping=stopping, progress=progress):
                    break
            self._close_journal()
        finally:
            # A failure mid-round (a store error) leaves the in-flight record: every entry of it is
            # looked up before any re-send; confirmed deliveries are kept if possible.
            try:
                self._commit_marks()
            except Exception:
                log.debug("could not save confirmed deliveries yet; kept for the next round")
        if flush:
            report.held = self.store.held_count()
        return report

    def _send_batch(self, client: TimeTrackClient, batch: list[OutboxEntry], report: Report, *, flush: bool,
                    stopping: Callable[[], bool], progress: Progress | None) -> bool:
        """Send (or look up) each entry of ``batch``; True when the round must stop."""
        # Durable before any POST of the batch: if we die from here on, they are "ambiguous". The
        # deliveries confirmed in the batch before are saved in the same transaction: one fsync.
        self._yield_to_taps()
        marks, self._marks = self._marks, []
        try:
            self.journal.begin([e.id for e in batch], marks)
        except Exception:
            self._marks = marks + self._marks  # confirmed by the server: never forget them
            raise
        self._journal_open = True
        self.schedule.in_flight = frozenset(e.id for e in batch)
        lanes = client.lanes()
        pending: deque[tuple[OutboxEntry, Future]] = deque()
        entries = iter(batch)
        stop = False
        try:
            while True:
                # Keep the lanes busy: the next entries go out while this thread records answers.
                # After trouble (and at a round's start) one entry goes alone, like a probe: a
                # portal or a refusing server gets one request, not one per lane.
                width = lanes.width if self._flowing else 1
                while not stop and len(pending) < width:
                    entry = next(entries, None)
                    if entry is None:
                        break
                    if not flush and stopping():
                        stop = True
                        break
                    self._yield_to_taps()
                    pending.append((entry, lanes.submit(self._deliver, entry)))
                if not pending:
                    break
                entry, future = pending.popleft()
                result, posted = future.result()  # answers are recorded in queue order, here
                self._yield_to_taps()
                # After a stop, answers already on their way are still recorded (never lost).
                stop = self._handle(client, entry, result, posted, report, flush=flush) or stop
                self._flowing = result.ok
                if progress is not None:
                    progress(entry, result)
                if self._marks and self.monotonic() - self._marks_since >= MARK_DELAY:
                    self._commit_marks()
            # The record stays until the next batch's begin (or the round's end) replaces it in
            # the transaction that also saves this batch's deliveries.
        finally:
            self.schedule.in_flight = frozenset()
        return stop

    def _deliver(self, client: TimeTrackClient, entry: OutboxEntry) -> tuple[SendResult, bool]:
        """(the result, whether it answers a POST). An ambiguous entry is looked up first."""
        try:
            if not entry.username or entry.end <= entry.start:
                return SendResult(SendOutcome.REJECTED, None, "local check: no username, or the entry ends "
                                  "before it starts", cause=Cause.REJECTED), True
        except (AttributeError, TypeError, ValueError) as exc:
            return SendResult(SendOutcome.REJECTED, None, f"local check: malformed entry "
                              f"({exc.__class__.__name__}: {exc})", cause=Cause.REJECTED), True
        if entry.ambiguous:
            try:
                server_id = client.find(entry)
            except LookupFailed as exc:
                return exc.result, False  # unknown whether it exists: never POST now
            if server_id is not None:
                log.info("entry %s is already in TimeTrack (ID %s): not sent again", entry.id, server_id)
                return SendResult(SendOutcome.DELIVERED, None, "found by lookup", server_id=server_id), False
        return client.create(entry), True

    # ------------------------------------------------------------ outcomes

    def _handle(self, client: TimeTrackClient, entry: OutboxEntry, result: SendResult, posted: bool,
                report: Report, *, flush: bool) -> bool:
        """Record one outcome; True when the round must stop."""
        verdict = self.policy.verdict(result, attempts=int(entry.attempts or 0), posted=posted)
        if verdict.action is Action.DELIVERED:
            if not self._marks:
                self._marks_since = self.monotonic()
            self._marks.append((entry.id, result.server_id))
            self._success(entry, report, "delivered", flush=flush)
            log.debug("entry %s delivered (ID %s)", entry.id, result.server_id)
            return False
        report.error = result.message
        if verdict.action is Action.CHECK_BASE_URL:
            probe = client.ping()
            if not probe.ok:  # the collection itself is missing: a wrong base_url, not a bad entry
                check = self.policy.verdict(probe, attempts=0, posted=False)
                state = check.pause if check.action is Action.PAUSE and check.pause else State.BACKING_OFF
                message = f"{result.message}; the entry list is unreachable too: check api.base_url"
                return self._stop(report, state, probe.message if probe.not_timetrack else message)
            verdict = Verdict(Action.REJECT)
        if verdict.action is Action.REJECT:
            self._commit_marks()
            self.store.reject(entry.id, result.status, result.message)
            log.warning("entry %s (%s) rejected by TimeTrack: %s", entry.id, entry.username, result.message)
            self._success(entry, report, "rejected", flush=flush)
            return False
        self._record(entry, verdict, result)
        if verdict.action is Action.PAUSE:
            assert verdict.pause is not None
            return self._stop(report, verdict.pause, result.message, at_least=verdict.at_least)
        report.failed += 1
        report.pause, tripped = self.policy.after_failure(report.pause, result)
        log.debug("entry %s not delivered: %s", entry.id, result.message)
        if tripped is not None:  # several entries in a row: the server (or the path to it) is in trouble
            report.stop = Stop(tripped, result.message)
            return True
        if not flush:
            self.board.set_error(result.message)
        return False

    def _record(self, entry: OutboxEntry, verdict: Verdict, result: SendResult) -> None:
        """Keep a failure on the entry (its attempts, backoff and ambiguity) and in the schedule."""
        if not (verdict.record or verdict.ambiguous):
            return
        at = clk.utcnow()
        changes: dict[str, Any] = {"last_error": result.message, "last_attempt": at}
        if verdict.attempt:
            changes["attempts"] = int(entry.attempts or 0) + 1
        if verdict.ambiguous:
            changes.update(ambiguous=True, ambiguous_at=at)
        delay = max(verdict.delay, self.policy.timing.settle) if verdict.ambiguous else verdict.delay
        if delay > 0:
            changes["next_attempt"] = wall(delay)
            self.schedule.defer(entry.id, self.monotonic() + delay)
        self.store.update_entry(entry.id, failed=True, **changes)

    def _success(self, entry: OutboxEntry, report: Report, kind: str, *, flush: bool) -> None:
        self.schedule.done(entry.id)
        report.pause = self.policy.after_success(report.pause)
        if kind == "delivered":
            report.delivered += 1
            self.board.delivered()
        else:
            report.rejected += 1
        if not flush and self.board.state != State.SENDING:
            self.board.publish(State.SENDING)

    def _stop(self, report: Report, state: State, message: str, *, at_least: float | None = None) -> bool:
        report.failed += 1
        report.error = message
        report.stop = Stop(state, message, at_least)
        return True

    # ------------------------------------------------------------ bookkeeping

    def _close_journal(self) -> None:
        """The round is over: save the confirmed deliveries and clear the in-flight record, together."""
        if not self._journal_open:
            self._commit_marks()
            return
        marks, self._marks = self._marks, []
        try:
            self.journal.end(marks)
        except Exception:
            self._marks = marks + self._marks
            raise
        self._journal_open = False

    def _commit_marks(self) -> None:
        marks, self._marks = self._marks, []
        if not marks:
            return
        try:
            self.store.mark_delivered_many(marks)  # one transaction (one fsync) for the lot
        except Exception:
            self._marks = marks + self._marks  # confirmed by the server: never forget them
            raise

    def _recover(self) -> None:
        """Entries whose POST may have been under way when a sender died: look them up first."""
        ids = self.journal.recorded()
        if not ids:
            return
        settle = self.policy.timing.settle
        marked = 0
        for entry_id in ids:
            if self.store.outbox_entry(entry_id) is not None:
                # Its POST may even be running still: look it up only after the settle time.
                self.store.update_entry(entry_id, ambiguous=True, ambiguous_at=clk.utcnow(), next_attempt=wall(settle))
                self.schedule.defer(entry_id, self.monotonic() + settle)
                marked += 1
        if marked:
            log.warning("%d entries may have been sent when the previous sender stopped: "
                        "each is looked up before it is sent again", marked)
        self.journal.end()
