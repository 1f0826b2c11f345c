"""What each tap looks and sounds like on the LEDs and the buzzer: the patterns, as data.

Every pattern is followed by 0.3 s of darkness, then the status sign (if any)
resumes. An active buzzer cannot change pitch: it plays the same rhythm, and
"high"/"low" differ only in length. Tones on a passive buzzer: high = E7
(2637 Hz), mid = A6 (1760 Hz), low = A4 (440 Hz).

| What | LED pair | RGB LED | Sound |
| --- | --- | --- | --- |
| clock-in | green steady 1 s | green steady 1 s | one short high beep (0.1 s) |
| clock-out | green: two blinks (0.3 s on, 0.2 s off) | green: two blinks (0.3 s on, 0.2 s off) | two short high beeps (0.1 s, one per blink) |
| too soon | red and green alternate, 3 x (0.15 s red, 0.15 s green) | same | low double beep (0.15 s, 0.1 s gap) |
| unknown, disabled or invalid badge | red steady 1.5 s | red steady 1.5 s | one long low tone (0.8 s) |
| enrolled (a waiting `kiosk enroll` mapped this badge) | green: three quick blinks (0.15 s on, 0.1 s off), then green steady 0.6 s | same | rising low, mid, high beeps (0.15 s, 0.15 s, 0.3 s) |
| error (tap not recorded) | red fast blinking, 6 x (0.1 s on, 0.1 s off) | same | three mid beeps (0.1 s on, 0.1 s off) |
| repeat tap | nothing (a running pattern goes on) | nothing | nothing |
| status backlog (entries wait offline) | red flash 0.1 s every 5 s | dim blue flash 0.1 s every 5 s | silent |
| status fault | the error pattern once, then red blinking 0.2 s on / 0.8 s off until the fault clears | same | the error pattern's three beeps once, then silent |

Patterns are steps (light and tone held for a time), built from a light track
and a sound track so the two stay in lockstep; :mod:`kiosk.feedback.gpio` plays
them. Kept apart from the devices so that what an employee sees can be read
(and reviewed) without the machinery that drives the pins.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.feedback import Health
from kiosk.rules import TapKind

OFF, GREEN, RED, DIM = "off", "green", "red", "dim"
TONE_HIGH, TONE_MID, TONE_LOW = "E7", "A6", "A4"
# A passive buzzer covers A3 (220 Hz) .. A7 (3520 Hz): all three tones above.
PASSIVE_MID_TONE, PASSIVE_OCTAVES = "A5", 2
REST_SECONDS = 0.3  # darkness after each pattern, before the status sign resumes


@dataclass(frozen=True)
class Step:
    """Hold ``light`` and ``tone`` (None: silent) for ``seconds``."""

    seconds: float
    light: str = OFF
    tone: str | None = None


@dataclass(frozen=True)
class Sign:
    """A status sign: ``light`` on for ``on`` seconds, off for ``off``, forever."""

    light: str
    on: float
    off: float


def _pattern(lights: list[tuple[str, float]], tones: list[tuple[str | None, float]]) -> tuple[Step, ...]:
    """Merge a light track and a sound track into steps, then add the rest."""
    def boundaries(track):
        t, out = 0.0, []
        for value, seconds in track:
            out.append((round(t, 6), value))
            t += seconds
        out.append((round(t, 6), None))
        return out

    light_b, tone_b = boundaries(lights), boundaries(tones)
    times = sorted({t for t, _ in light_b} | {t for t, _ in tone_b})

    def value_at(bounds, t, idle):
        value = idle
        for start, v in bounds:
            if start <= t:
                value = v if v is not None else idle
        return value

    steps = [
        Step(round(end - start, 6), value_at(light_b, start, OFF), value_at(tone_b, start, None))
        for start, end in zip(times, times[1:])
    ]
    return (*steps, Step(REST_SECONDS))


_UNKNOWN = _pattern([(RED, 1.5)], [(TONE_LOW, 0.8)])
_ERROR = _pattern([(RED, 0.1), (OFF, 0.1)] * 6, [(TONE_MID, 0.1), (None, 0.1)] * 3)

#: Tap patterns by outcome; a kind that is missing (REPEAT) shows nothing.
PATTERNS: dict[TapKind, tuple[Step, ...]] = {
    TapKind.CLOCK_IN: _pattern([(GREEN, 1.0)], [(TONE_HIGH, 0.1)]),
    TapKind.CLOCK_OUT: _pattern([(GREEN, 0.3), (OFF, 0.2), (GREEN, 0.3)], [(TONE_HIGH, 0.1), (None, 0.4), (TONE_HIGH, 0.1)]),
    TapKind.TOO_SOON: _pattern([(RED, 0.15), (GREEN, 0.15)] * 3, [(TONE_LOW, 0.15), (None, 0.1), (TONE_LOW, 0.15)]),
    TapKind.UNKNOWN: _UNKNOWN,
    TapKind.DISABLED: _UNKNOWN,
    TapKind.INVALID: _UNKNOWN,
    TapKind.ERROR: _ERROR,
    TapKind.ENROLLED: _pattern([(GREEN, 0.15), (OFF, 0.1)] * 3 + [(GREEN, 0.6)],
                               [(TONE_LOW, 0.15), (None, 0.1), (TONE_MID, 0.15), (None, 0.1), (TONE_HIGH, 0.3)]),
}
#: Played once when the status turns to FAULT, before the fault sign.
FAULT_ALERT = _ERROR
#: Quiet status signs (no sound), run with gpiozero's background blink.
SIGNS: dict[Health, Sign] = {
    Health.BACKLOG: Sign(DIM, 0.1, 4.9),
    Health.FAULT: Sign(RED, 0.2, 0.8),
}
