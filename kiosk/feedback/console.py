"""Console feedback: one line per outcome, for the demo, scripts and a kiosk without LEDs.

The lines are meant for people and for scripts alike (``IN  anna 08:02:11``,
``OUT anna 16:31:40 8h29m``, ``UNKNOWN 04A1B2C3``, ``TOO SOON anna``,
``ENROLLED 04A1B2C3 anna``); times
are local wall-clock time, as the person at the door reads them.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta  # noqa: F401 - UTC, datetime: the docstring examples
from typing import IO

from kiosk.feedback import Feedback, Health, Status
from kiosk.rules import TapKind, TapOutcome

_COLOURS = {
    TapKind.CLOCK_IN: "32", TapKind.CLOCK_OUT: "36", TapKind.TOO_SOON: "33", TapKind.UNKNOWN: "31",
    TapKind.DISABLED: "31", TapKind.INVALID: "31", TapKind.ERROR: "1;31", TapKind.REPEAT: "2",
    TapKind.ENROLLED: "1;32",
}


def format_duration(delta: timedelta) -> str:
    """``8h29m``; under a minute ``42s`` (a demo's short sessions)."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    return f"{minutes // 60}h{minutes % 60:02d}m"


def describe(outcome: TapOutcome) -> str:
    """The console line for an outcome (without colour)."""
    when = outcome.at.astimezone().strftime("%H:%M:%S")
    user = outcome.username or ""
    match outcome.kind:
        case TapKind.CLOCK_IN:
            line = f"IN  {user} {when}"
            if outcome.stale is not None:
                line += f" (open clock-in since {outcome.stale.since.astimezone():%Y-%m-%d %H:%M} flagged for review)"
            return line
        case TapKind.CLOCK_OUT:
            return f"OUT {user} {when} {format_duration(outcome.duration)}"
        case TapKind.TOO_SOON:
            return f"TOO SOON {user}"
        case TapKind.REPEAT:
            return f"REPEAT {outcome.uid} (ignored)"
        case TapKind.UNKNOWN:
            return f"UNKNOWN {outcome.uid}"
        case TapKind.DISABLED:
            return f"DISABLED {outcome.uid} {user}"
        case TapKind.ENROLLED:
            return f"ENROLLED {outcome.uid} {user}"
        case TapKind.INVALID:
            return f"INVALID {outcome.message}"
        case _:
            return f"ERROR {outcome.message}"


class ConsoleFeedback(Feedback):
    """One line per outcome on ``stream`` (stdout), coloured on a terminal; STATUS lines when the condition changes.

        >>> import io
        >>> out = io.StringIO()
        >>> ConsoleFeedback(out, colour=False).show(TapOutcome(TapKind.UNKNOWN, "04A1B2C3", datetime.now(UTC)))
        >>> out.getvalue()
        'UNKNOWN 04A1B2C3\\n'
    """

    name = "console"

    def __init__(self, stream: IO[str] | None = None, *, colour: bool | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.colour = self.stream.isatty() if colour is None else colour
        self._lock = threading.Lock()
        self._status = Status()

    def _write(self, text: str, code: str = "") -> None:
        if self.colour and code:
            text = f"\033[{code}m{text}\033[0m"
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def show(self, outcome: TapOutcome) -> None:
        self._write(describe(outcome), _COLOURS.get(outcome.kind, ""))

    def enrolling(self, username: str | None) -> None:
        """A `kiosk enroll` waits for a tap (``username``), or no longer does (None)."""
        self._write(f"ENROLLING {username}: tap the new badge" if username else "ENROLLING ended", "1;32")

    def set_status(self, status: Status) -> None:
        if (status.health, status.message) == (self._status.health, self._status.message):
            return  # a new queue count alone is not worth a line
        self._status = status
        if status.health is Health.OK:
            self._write("STATUS ok", "2")
        else:
            self._write(f"STATUS {status.health}: {status.message}", "33" if status.health is Health.BACKLOG else "31")
