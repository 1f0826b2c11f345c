"""systemd integration: readiness and watchdog notifications, journald logging.

``systemd.daemon.notify`` returns False without NOTIFY_SOCKET and raises when
the socket path is gone; a kiosk must never die of its status reports, so every
call is wrapped. systemd-python has no watchdog helper: WATCHDOG_USEC is read here.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("kiosk.service")


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1", "WATCHDOG=1", "STATUS=...") to systemd; never raises."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    try:
        from systemd import daemon

        return bool(daemon.notify(message))
    except Exception as exc:  # a vanished socket must not stop the kiosk
        log.debug("sd_notify failed: %s", exc)
        return False


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of WATCHDOG_USEC), or None when not watched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.05)
    except ValueError:
        return None


def under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup_logging(level: str = "INFO", *, journal: bool | None = None) -> None:
    """Log to journald when run by systemd, else to stderr."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler | None = None
    if journal if journal is not None else under_systemd():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="kiosk")
        except Exception:  # pragma: no cover - journald missing
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    # sqlitedict logs every statement at INFO, and a failed statement (a full disk) as a traceback
    # of a dozen ERROR lines from its own thread; the store reports each failure itself, in one
    # line (kiosk.store, the tap's ERROR), so only sqlitedict's critical messages get through.
    logging.getLogger("sqlitedict").setLevel(logging.CRITICAL)
