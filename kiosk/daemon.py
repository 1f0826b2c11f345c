"""The daemon: threads, signals, systemd readiness and watchdog, around parts it is given.

The parts (store, clock, sender, reader, feedback) are built by
:func:`kiosk.app.build` from the settings; the daemon only runs them.

Threads: the reader thread hands each tap to :class:`kiosk.taps.TapDesk`
(decision, durable commit, feedback, in that order; never the network); the sender thread
delivers the outbox on its own store connection; the main thread handles
signals (through :class:`kiosk.signals.SignalBox`: handlers only record, the
loop acts), SIGHUP reloads, clock correction, store identity and the watchdog.
SIGTERM/SIGINT (or the end of stdin input) let the tap in hand finish, then
everything stops and the exit code is 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import replace
from datetime import timedelta

from kiosk import config, feedback as feedback_mod, metrics, readers, service
from kiosk.clock import Clock
from kiosk.delivery.sender import Sender
from kiosk.exc import StoreError
from kiosk.feedback import Feedback, Health, Status
from kiosk.metrics import MetricsWriter
from kiosk.readers import Reader
from kiosk.rules import TapOutcome
from kiosk.signals import SignalBox
from kiosk.taps import TapDesk
from kiosk.store import Store, presence

log = logging.getLogger("kiosk.daemon")
STUCK_TAP_SECONDS = 30.0  # a tap still in progress after this stops the watchdog pings: systemd restarts us
PRUNE_EVERY = 24 * 3600.0
METRICS_EVERY = 5.0  # seconds between metrics writes when nothing changes
METRICS_SOONEST = 1.0  # ... and at least this long between two writes after changes
CORRECTION_BUDGET = 0.2  # seconds of held-entry correction per main-loop turn; taps interleave between batches


class Daemon:
    """Runs the kiosk: ``Daemon(settings, store=, clock=, sender=, reader=, feedback=).run()``.

    ``tick``: seconds between housekeeping turns. ``drain_seconds``: at the end,
    give the sender this long to empty the queue (the demo). ``stuck_after``: a
    tap still in progress after this many seconds stops the watchdog pings.
    """

    def __init__(self, settings: config.Settings, *, store: Store, clock: Clock, sender: Sender, reader: Reader,
                 feedback: Feedback, metrics: MetricsWriter | None = None, tick: float = 1.0,
                 drain_seconds: float = 0.0, stuck_after: float = STUCK_TAP_SECONDS):
        self.settings = settings
        self.store, self.clock, self.sender, self.reader, self.feedback = store, clock, sender, reader, feedback
        self.metrics = metrics
        self.rules = settings.rules
        self.stop_event = threading.Event()
        self.exit_code = 0
        self.tick = tick
        self.drain_seconds = drain_seconds
        self.stuck_after = stuck_after
        self.signals = SignalBox()
        self.reader_thread = threading.Thread(target=self._read_loop, name="kiosk-reader", daemon=True)
        self.reader.on_health = self._on_reader_health
        self.sender.on_status = self._on_sender_status
        self.feedback.on_health = self._on_feedback_health
        self.taps = TapDesk(settings, store, clock, feedback, on_recorded=self._on_recorded,
                            on_store_error=self._on_store_error)
        self.sender.give_way_to(self.taps.idle)  # a drain pauses while a tap is handled
        self._faults: dict[str, str] = {}
        self._backlog = False
        self._queued = 0
        self._status_lock = threading.Lock()
        self._secret_mtime = self._secret_file_mtime()
        self._was_synced: bool | None = None
        self._held_left = 0  # held entries still to correct once the clock is trusted
        self._clock_published: tuple | None = None
        self._next_prune = 0.0
        self._last_metrics = -METRICS_EVERY  # monotonic time of the last metrics write
        self._changed = False  # a tap or a delivery since the last metrics write
        self.heartbeat = presence.Heartbeat(store.path)  # `kiosk status`: pid, and alive within seconds
        self._nudges = 0

    # ------------------------------------------------------------ taps

    def handle(self, raw: str | bytes | readers.Invalid) -> TapOutcome:
        """One tap (see :class:`kiosk.taps.TapDesk`): what the reader thread does with each."""
        return self.taps.handle(raw)

    def _on_recorded(self, outcome: TapOutcome, entry_id: int | None) -> None:
        self._set_fault("store", None)
        self._changed = True
        if entry_id is not None:
            self.sender.wake()

    def _on_store_error(self, message: str) -> None:
        self._set_fault("store", message)
        self._changed = True

    def _read_loop(self) -> None:
        try:
            for raw in self.reader.taps(self.stop_event):
                self.handle(raw)
                if self.stop_event.is_set():
                    break
            log.info("reader input ended")
        except Exception:
            log.exception("reader failed")
            self.exit_code = 1
        finally:
            self.stop_event.set()
            self.signals.kick()

    # ------------------------------------------------------------ status

    def _on_reader_health(self, ok: bool, message: str) -> None:
        (log.info if ok else log.error)("reader %s%s", "ok" if ok else "down", f": {message}" if message else "")
        self._set_fault("reader", None if ok else message or "reader not answering")
        try:
            self.store.set_status("reader", {"ok": ok, "message": message, "at": time.time()})
        except Exception:
            log.exception("cannot record reader status")

    def _on_feedback_health(self, ok: bool, message: str) -> None:
        """A feedback device (the display) failed or recovered: log it, show it, keep it for ``kiosk status``."""
        # Logged and kept for `kiosk status`, but no fault sign: taps still work and the LEDs say so.
        (log.info if ok else log.error)("feedback %s%s", "ok" if ok else "failing", f": {message}" if message else "")
        try:
            self.store.set_status("feedback", {"ok": ok, "message": message, "at": time.time()})
        except Exception:
            log.exception("cannot record feedback status")

    def _on_sender_status(self, status: dict) -> None:
        self._changed = True
        state = status.get("state", "")
        self._set_fault("sender", "credentials rejected" if state == "credentials rejected" else None)
        with self._status_lock:
            self._queued = int(status.get("queued") or 0)
            self._backlog = state in ("offline", "backing off", "not timetrack") and bool(status.get("queued", 1))
        self._update_feedback()

    def _set_fault(self, source: str, message: str | None) -> None:
        with self._status_lock:
            if message is None:
                if self._faults.pop(source, None) is None:
                    return
            elif self._faults.get(source) == message:
                return
            else:
                self._faults[source] = message
        self._update_feedback()

    def _update_feedback(self) -> None:
        with self._status_lock:
            problems = tuple(self._faults.values())
            if self._faults:
                status = Status(Health.FAULT, "; ".join(problems), self._queued, problems)
            elif self._backlog:
                status = Status(Health.BACKLOG, "entries waiting for delivery", self._queued)
            else:
                status = Status(queued=self._queued)
        self.feedback.set_status(status)
        service.notify(f"STATUS={status.health}{': ' + status.message if status.message else ''}")

    # ------------------------------------------------------------ housekeeping

    def _secret_file_mtime(self) -> float | None:
        path = self.settings.api.secret_file
        try:
            return os.stat(path).st_mtime if path else None
        except OSError:
            return None

    def reload(self) -> None:
        """Re-read the configuration's API settings (SIGHUP, or the secret file changed)."""
        if not self.settings.path:
            return
        try:
            new = config.load(self.settings.path)
        except config.ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        self.settings = replace(self.settings, api=new.api)
        self.sender.update_api(new.api)
        log.info("configuration reloaded")

    def _housekeeping(self) -> bool:
        """One turn of the main loop's chores; True when there is more work to do at once."""
        mtime = self._secret_file_mtime()
        if mtime != self._secret_mtime:
            self._secret_mtime = mtime
            log.info("secret file changed")
            self.reload()
        self._check_store()
        self.sender.watch()  # a request that lasts: "stuck in a request for N s" in kiosk status
        self.taps.check_enrolment()
        nudges = self.store.nudges()  # entries queued by a `kiosk` command: deliver them now
        if nudges != self._nudges:
            self._nudges = nudges
            self.sender.wake()
        more = self._check_clock()
        now = time.monotonic()
        if now >= self._next_prune and self.clock.synced():  # a clock far ahead must not prune
            self._next_prune = now + PRUNE_EVERY
            removed = self.store.prune(self.clock.now() - timedelta(days=self.settings.kiosk.history_days))
            if removed:
                log.info("pruned %d history records older than %g days", removed, self.settings.kiosk.history_days)
        self._save_error_count()
        self._write_metrics(now)
        return more

    def _save_error_count(self) -> None:
        """Count ERROR taps in the store once it works again (the counters survive restarts)."""
        n = self.taps.unsaved_errors
        if not n:
            return
        try:
            self.store.bump_counter("taps:error", n)
        except Exception:
            return  # still failing: the count waits in memory
        self.taps.unsaved_errors -= n

    def _write_metrics(self, now: float) -> None:
        """The Prometheus textfile: every few seconds, and within a second of a tap or a delivery."""
        if self.metrics is None:
            return
        since = now - self._last_metrics
        if since < (METRICS_SOONEST if self._changed else METRICS_EVERY):
            return
        self._changed = False
        self._last_metrics = now
        try:
            # Read on the sender's connection, never the tap's.
            snapshot = metrics.snapshot(self.sender.store, unsaved_errors=self.taps.unsaved_errors,
                                        reader_up=self.reader.healthy, clock_synced=self.clock.synced(),
                                        name=self.settings.kiosk.name)
        except Exception:
            log.exception("cannot gather the metrics")
            return
        self.metrics.update(snapshot)

    def _check_store(self) -> None:
        """Notice a store file deleted or replaced under us: a fault, and taps answered ERROR."""
        try:
            self.store.check_identity()
        except StoreError as exc:
            if "store" not in self._faults:
                log.critical("%s", exc)
            self._set_fault("store", str(exc))

    def _check_clock(self) -> bool:
        """Once the clock is trusted, correct (or flag) the stamps taken before, a batch at a time.

        Returns True while held entries remain to be corrected (the main loop comes back at once).
        """
        synced = self.clock.synced()
        self._publish_clock()
        if not synced:
            if self._was_synced is None:
                log.warning("system clock not synchronised: taps keep a monotonic reference until it is")
            self._was_synced = False
            return False
        if self._was_synced is not True:
            with self.taps.clock_lock:
                result = self.store.correct_open(self.clock.correct)
            if result["fixed"] or result["flagged"]:
                log.warning("clock trusted: corrected %(fixed)d open clock-ins, flagged %(flagged)d", result)
            self._was_synced = True
            self._held_left = self.store.held_count()
        if not self._held_left:
            # Taps stamped while only TimeTrack's Date vouches for a wrong local clock are held too.
            self._held_left = self.store.held_count()
        if not self._held_left:
            return False
        deadline = time.monotonic() + CORRECTION_BUDGET
        fixed = flagged = 0
        while self._held_left and time.monotonic() < deadline and not self.stop_event.is_set():
            with self.taps.clock_lock:  # one short transaction per batch: taps go in between
                batch = self.store.correct_held(self.clock.correct, self.rules.max_session_hours * 3600,
                                                note=self.clock.correction_note())
            fixed, flagged, self._held_left = fixed + batch["fixed"], flagged + batch["flagged"], batch["left"]
            if not (batch["fixed"] or batch["flagged"]):
                self._held_left = 0
        if fixed or flagged:
            log.warning("clock trusted: corrected %d held entries, flagged %d for review (%d left)",
                        fixed, flagged, self._held_left)
            self.sender.wake()  # corrected entries may be sent now
        return bool(self._held_left)

    def _publish_clock(self) -> None:
        """The clock's trust for ``kiosk status`` (status record ``clock``), written when it changed."""
        summary = self.clock.summary()
        sample = summary["sample"] or {}
        key = (summary["trusted"], summary["source"], summary["offset_applied"],
               None if summary["skew_seconds"] is None else round(summary["skew_seconds"]),
               sample.get("epoch_at_boot"))
        if key != self._clock_published:
            self._clock_published = key
            self.store.set_status("clock", summary)

    # ------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        """Stop after the tap in hand (any thread; the signal handlers do the same through the pipe)."""
        self.stop_event.set()
        self.signals.kick()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_seconds
        while time.monotonic() < deadline and self.store.outbox_count():
            self.sender.wake()
            time.sleep(0.05)

    def healthy(self) -> bool:
        """For the watchdog: the reader thread lives, no tap is stuck (e.g. in a hung store write),
        and the sender thread lives and is not stuck in a request past its deadline."""
        busy = self.taps.busy_since
        return (self.reader_thread.is_alive() and (busy is None or time.monotonic() - busy < self.stuck_after)
                and self.sender.healthy())

    def _shutdown(self) -> None:
        """Stop every part that started, each on its own: one failure must not skip the rest."""
        thread = self.reader_thread
        steps = [
            ("reader thread", lambda: thread.join(timeout=10) if thread.is_alive() else None),
            ("drain", self._drain),
            ("sender", lambda: self.sender.stop(timeout=10)),
            ("sender status", lambda: self.store.set_status("sender", {**self.sender.status, "state": "stopped"})),
            ("reader", self.reader.close),
            ("feedback", self.feedback.close),
            ("sender store", self.sender.store.close),
            ("store", self.store.close),
            ("signals", self.signals.close),
            ("heartbeat", self.heartbeat.release),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:
                log.exception("stopping the %s failed", name)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT, :meth:`request_stop` or the end of the reader's input; the exit code."""
        self.signals.install()
        log.info("kiosk %s starting: reader %s, feedback %s, store %s", self.settings.kiosk.name,
                 self.settings.reader.type, "+".join(feedback_mod.kinds(self.settings)), self.store.path)
        try:
            self.heartbeat.claim()  # DaemonRunning: another daemon (or a restore) has this store
            self.sender.start()
            self.reader_thread.start()
            service.notify("READY=1")
            watchdog = service.watchdog_interval()
            tick = min(self.tick, watchdog) if watchdog else self.tick
            more = True  # the first turn comes at once: clock correction, store checks
            chores_failing = False
            while not self.stop_event.is_set():
                self.heartbeat.beat()
                got = self.signals.wait(0 if more else tick)
                if got & {signal.SIGTERM, signal.SIGINT} or self.stop_event.is_set():
                    log.info("stopping (%s)", ", ".join(signal.Signals(s).name for s in sorted(got)) or "requested")
                    break
                if signal.SIGHUP in got:
                    self.reload()  # once per burst, however many SIGHUPs came
                try:
                    more = self._housekeeping()
                    if chores_failing:
                        log.info("housekeeping works again")
                    chores_failing = False
                except Exception:  # e.g. the store busy for a moment: try again next tick (logged once)
                    if not chores_failing:
                        log.exception("housekeeping failed; retrying every tick, quietly until it works")
                    chores_failing, more = True, False
                if watchdog and self.healthy():
                    service.notify("WATCHDOG=1")
        except Exception:
            log.exception("kiosk failed")
            self.exit_code = 1
        finally:
            service.notify("STOPPING=1")
            self.stop_event.set()
            self._shutdown()
            log.info("kiosk stopped")
        return self.exit_code
