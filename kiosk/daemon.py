"""The daemon: wiring, threads, signals, systemd readiness and watchdog.

Threads: the reader thread turns each tap into a decision, a durable commit
and feedback, in that order, and never touches the network; the sender thread
delivers the outbox; the main thread handles signals, SIGHUP reloads, clock
synchronisation and the watchdog. SIGTERM/SIGINT (or the end of stdin input)
let the tap in hand finish, then everything stops and the exit code is 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import replace
from datetime import timedelta

from kiosk import badges, clock, config, feedback as feedback_mod, readers, service, text
from kiosk.clock import Clock
from kiosk.exc import BadgeIdError
from kiosk.feedback import Feedback, Health, Status
from kiosk.readers import Reader
from kiosk.rules import TapKind, TapOutcome, decide
from kiosk.delivery.sender import Sender
from kiosk.store import Store

log = logging.getLogger("kiosk.daemon")
STUCK_TAP_SECONDS = 30.0  # a tap still in progress after this stops the watchdog pings: systemd restarts us
PRUNE_EVERY = 24 * 3600.0


class Daemon:
    def __init__(self, settings: config.Settings, *, reader: Reader | None = None,
                 feedback: Feedback | None = None, reader_kwargs: dict | None = None,
                 feedback_kwargs: dict | None = None, tick: float = 1.0,
                 drain_seconds: float = 0.0):
        self.settings = settings
        self.stop_event = threading.Event()
        self.exit_code = 0
        self.tick = tick
        self.drain_seconds = drain_seconds  # demo: let the sender empty the queue before exit
        self.clock = Clock(settings.clock.sync_file)
        self.rules = settings.rules
        self.store = Store(settings.store_path)
        self.reader = reader or readers.create(settings.reader, **(reader_kwargs or {}))
        self.feedback = feedback or feedback_mod.create(settings, **(feedback_kwargs or {}))
        self.sender = Sender(self.store, settings.api, on_status=self._on_sender_status)
        self.reader.on_health = self._on_reader_health
        self.feedback.on_health = self._on_feedback_health
        self._last_seen: dict[str, float] = {}
        self._faults: dict[str, str] = {}
        self._backlog = False
        self._queued = 0
        self._status_lock = threading.Lock()
        self._reload = threading.Event()
        self._kick = threading.Event()  # wakes the main loop
        self._secret_mtime = self._secret_file_mtime()
        self._was_synced: bool | None = None
        self._clock_lock = threading.RLock()
        self._busy_since: float | None = None  # a tap in progress since (monotonic)
        self._next_prune = 0.0

    # ------------------------------------------------------------ taps

    def handle(self, raw: str | bytes | readers.Invalid) -> TapOutcome:
        """One tap: parse, decide, commit durably, then signal. Never waits on the network."""
        self._busy_since = time.monotonic()
        try:
            # The clock lock spans stamp to commit: a correction of unsynced stamps can't slip in between.
            with self._clock_lock:
                return self._handle_stamped(raw, self.clock.stamp())
        finally:
            self._busy_since = None

    def _handle_stamped(self, raw: str | bytes | readers.Invalid, stamp) -> TapOutcome:
        mono = time.monotonic()
        try:
            if isinstance(raw, readers.Invalid):  # the reader refused it already (e.g. too long)
                raise BadgeIdError(raw.reason)
            if isinstance(raw, bytes | bytearray):  # a hardware reader: UID bytes, nothing to guess
                uid = badges.from_bytes(raw)
            else:
                uid = badges.parse(raw, self.settings.badges.decimal_byte_order)
        except BadgeIdError as exc:
            if isinstance(raw, readers.Invalid):
                shown = raw.shown
            else:
                shown = text.escape(raw.hex().upper() if isinstance(raw, bytes | bytearray) else raw, limit=64)
            outcome = TapOutcome(TapKind.INVALID, shown, stamp.at, message=str(exc))
            self._commit(outcome, stamp)
            return outcome
        try:
            if stamp.synced and self._was_synced is False:
                self._check_clock()  # correct earlier stamps before comparing with them
            badge = self.store.badge(uid)
            open_ = self.store.open_clock_in(badge.username) if badge else None
            last = self._last_seen.get(uid)
            comparable = open_ is None or (
                (open_.synced and stamp.synced) or (not open_.synced and not stamp.synced and open_.boot == stamp.boot))
            outcome = decide(uid, badge, open_, None if last is None else mono - last, stamp.at, self.rules,
                             comparable=comparable)
        except Exception as exc:
            log.exception("cannot read the store for tap %s", uid)
            outcome = TapOutcome(TapKind.ERROR, uid, stamp.at, message=f"store error: {exc}")
            self.feedback.show(outcome)
            return outcome
        outcome = self._commit(outcome, stamp)
        if outcome.kind is not TapKind.ERROR:  # a tap that was not recorded may be repeated at once
            self._last_seen[uid] = mono
        return outcome

    def _commit(self, outcome: TapOutcome, stamp) -> TapOutcome:
        name = self.settings.kiosk.name
        try:
            entry_id = self.store.record(outcome, stamp, notes=f"kiosk: {name}", kiosk=name)
        except Exception as exc:
            log.exception("cannot record tap %s (%s)", outcome.uid, outcome.kind)
            self._set_fault("store", f"store error: {exc}")
            outcome = TapOutcome(TapKind.ERROR, outcome.uid, outcome.at, outcome.username, message=f"not recorded: {exc}")
            self.feedback.show(outcome)
            return outcome
        self._set_fault("store", None)
        self.feedback.show(outcome)  # only now: the tap is on disk
        log.info("tap %s %s %s%s", outcome.uid, outcome.kind, outcome.username or "-",
                 f" entry {entry_id}" if entry_id else "")
        if outcome.stale is not None:
            log.warning("flagged stale clock-in of %s since %s", outcome.stale.username, outcome.stale.since)
        if entry_id is not None:
            self.sender.wake()
        return outcome

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
            self._kick.set()

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
        state = status.get("state", "")
        self._set_fault("sender", "credentials rejected" if state == "credentials rejected" else None)
        with self._status_lock:
            self._queued = int(status.get("queued") or 0)
            self._backlog = state in ("offline", "backing off") and bool(status.get("queued", 1))
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

    def _housekeeping(self) -> None:
        if self._reload.is_set():
            self._reload.clear()
            self.reload()
        mtime = self._secret_file_mtime()
        if mtime != self._secret_mtime:
            self._secret_mtime = mtime
            log.info("secret file changed")
            self.reload()
        self._check_clock()
        now = time.monotonic()
        if now >= self._next_prune and self.clock.synced():  # a clock far ahead must not prune
            self._next_prune = now + PRUNE_EVERY
            removed = self.store.prune(clock.utcnow() - timedelta(days=self.settings.kiosk.history_days))
            if removed:
                log.info("pruned %d history records older than %g days", removed, self.settings.kiosk.history_days)

    def _check_clock(self) -> None:
        """Once the clock synchronises, correct (or flag) the stamps taken before."""
        with self._clock_lock:
            synced = self.clock.synced()
            if synced and self._was_synced is not True:
                result = self.store.fix_unsynced(self.clock.correct, self.rules.max_session_hours * 3600)
                if result["fixed"] or result["flagged"]:
                    log.warning("clock synchronised: corrected %(fixed)d stamps, flagged %(flagged)d for review",
                                result)
                    self.sender.wake()  # corrected entries may be sent now
            elif not synced and self._was_synced is None:
                log.warning("system clock not synchronised: taps keep a monotonic reference until it is")
            self._was_synced = synced

    # ------------------------------------------------------------ lifecycle

    def request_stop(self, *_args) -> None:
        self.stop_event.set()
        self._kick.set()

    def request_reload(self, *_args) -> None:
        self._reload.set()
        self._kick.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_seconds
        while time.monotonic() < deadline and self.store.outbox_count():
            self.sender.wake()
            time.sleep(0.05)

    def _healthy(self, reader_thread: threading.Thread) -> bool:
        """For the watchdog: the reader thread lives and no tap is stuck (e.g. in a hung store write)."""
        busy = self._busy_since
        return reader_thread.is_alive() and (busy is None or time.monotonic() - busy < STUCK_TAP_SECONDS)

    def _shutdown(self, reader_thread: threading.Thread) -> None:
        """Stop every part that started, each on its own: one failure must not skip the rest."""
        steps = [
            ("reader thread", lambda: reader_thread.join(timeout=10) if reader_thread.is_alive() else None),
            ("drain", self._drain),
            ("sender", lambda: self.sender.stop(timeout=10)),
            ("sender status", lambda: self.store.set_status("sender", {**self.sender.status, "state": "stopped"})),
            ("reader", self.reader.close),
            ("feedback", self.feedback.close),
            ("store", self.store.close),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:
                log.exception("stopping the %s failed", name)

    def run(self) -> int:
        self._install_signals()
        reader_thread = threading.Thread(target=self._read_loop, name="kiosk-reader", daemon=True)
        log.info("kiosk %s starting: reader %s, feedback %s, store %s", self.settings.kiosk.name,
                 self.settings.reader.type, "+".join(feedback_mod.kinds(self.settings)), self.store.path)
        try:
            try:
                self._housekeeping()
            except Exception:  # e.g. the store busy: the main loop tries again
                log.exception("housekeeping failed")
            self.sender.start()
            reader_thread.start()
            service.notify("READY=1")
            watchdog = service.watchdog_interval()
            tick = min(self.tick, watchdog) if watchdog else self.tick
            while not self.stop_event.is_set():
                self._kick.wait(tick)  # a tick, or at once for SIGHUP / stop
                self._kick.clear()
                if self.stop_event.is_set():
                    break
                try:
                    self._housekeeping()
                except Exception:  # e.g. the store busy for a moment: try again next tick
                    log.exception("housekeeping failed")
                if watchdog and self._healthy(reader_thread):
                    service.notify("WATCHDOG=1")
        except Exception:
            log.exception("kiosk failed")
            self.exit_code = 1
        finally:
            service.notify("STOPPING=1")
            self.stop_event.set()
            self._shutdown(reader_thread)
            log.info("kiosk stopped")
        return self.exit_code
