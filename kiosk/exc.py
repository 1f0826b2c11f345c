"""Every error the kiosk raises on purpose, under one root: :class:`KioskError`.

Modelled on gpiozero's ``GPIOZeroError``: one root to catch, subclasses that
also inherit the matching builtin (a :class:`ConfigError` is a ``ValueError``,
a :class:`StoreMissing` a ``FileNotFoundError``), and typed causes instead of
message wording, so that callers (the CLI's exit codes, ``kiosk doctor``'s
advice) never parse a sentence::

    try:
        reader = readers.create(settings.reader)
    except HardwareError as exc:
        print(exc, exc.cause)          # what happened, and why (a Cause)
        sys.exit(exc.exit_code)        # 69

Each class carries the exit code of the sysexits.h convention that ``kiosk``
uses for it; the CLI maps errors to codes in one place (``kiosk.cli``).
"""

from __future__ import annotations

import enum
import os

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_UNAVAILABLE = 69  # a device (reader, GPIO, display) cannot be used
EX_CONFIG = 78  # the configuration is wrong: nothing was started or changed


class Cause(enum.StrEnum):
    """Why a device or service could not be used: the doctor turns each into one fix."""

    UNKNOWN = "unknown"
    NOT_A_PI = "not_a_pi"  # RPi.GPIO (or another Pi-only library) refuses to load here
    MISSING_PACKAGE = "missing_package"  # a Python package is not installed in the venv
    DEVICE_MISSING = "device_missing"  # /dev/spidev*, /dev/input/..., an I2C bus: not there
    PERMISSION = "permission"  # the device exists, this user may not use it
    PIN_SETUP = "pin_setup"  # a GPIO pin cannot be set up (Pi 5 without rpi-lgpio, no gpio group)
    PIN_BUSY = "pin_busy"  # another process (the daemon?) holds the pin
    PIN_CONFLICT = "pin_conflict"  # two parts configured on one pin
    NOT_A_KEYBOARD = "not_a_keyboard"  # the input device has no key events
    NOT_ANSWERING = "not_answering"  # the device is there but does not answer


class KioskError(Exception):
    """Root of the kiosk's own errors; ``exit_code`` is what ``kiosk`` exits with."""

    exit_code = EX_FAILURE


# ---------------------------------------------------------------- configuration


class ConfigError(KioskError, ValueError):
    """A configuration problem; ``str()`` names file, key and reason."""

    exit_code = EX_CONFIG

    def __init__(self, path: str | os.PathLike | None, key: str | None, reason: str):
        self.path, self.key, self.reason = str(path) if path else None, key, reason
        where = ": ".join(p for p in (self.path, key) if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class InsecureURL(KioskError, ValueError):
    """Plain http:// to a host that is not loopback, without api.allow_insecure_http."""

    exit_code = EX_CONFIG


# ---------------------------------------------------------------- input


class BadgeIdError(KioskError, ValueError):
    """Input that is not a badge id; the message says why."""


# ---------------------------------------------------------------- hardware


class HardwareError(KioskError, RuntimeError):
    """A device cannot be used on this machine; ``cause`` says why, the message what to do."""

    exit_code = EX_UNAVAILABLE

    def __init__(self, message: str, cause: Cause = Cause.UNKNOWN):
        super().__init__(message)
        self.cause = Cause(cause)


class ReaderUnavailable(HardwareError):
    """The badge reader (RC522 or keyboard-wedge) cannot be used."""


class GpioUnavailable(HardwareError):
    """The LEDs or the buzzer cannot be set up on their GPIO pins."""


class DisplayUnavailable(HardwareError):
    """The display cannot be set up."""


# ---------------------------------------------------------------- store


class StoreError(KioskError, RuntimeError):
    """The store cannot be opened or used; the message says why."""


class StoreMissing(StoreError, FileNotFoundError):
    """There is no store (yet) where the configuration says it is."""


class StoreCorrupt(StoreError):
    """The file is not a kiosk store, or fails SQLite's integrity check."""


class StoreTooNew(StoreError):
    """The store was written by a newer kiosk (schema version)."""


class StoreGone(StoreError):
    """The store file was deleted or replaced under a running daemon: taps can't be kept."""


class Conflict(StoreError):
    """A change refused because the record is not as the caller expected (e.g. mapped to someone else)."""


class NotFound(StoreError, LookupError):
    """No such record (badge, entry, open clock-in)."""


# ---------------------------------------------------------------- delivery


class DeliveryError(KioskError, RuntimeError):
    """Entries cannot be delivered now (API not configured, outbox held elsewhere)."""


class SenderBusy(DeliveryError):
    """Another process (normally the daemon) is delivering the outbox right now."""


# ---------------------------------------------------------------- administration


class InputRefused(KioskError, ValueError):
    """Input refused as a whole, for reasons listed one per line of the input.

    ``errors`` holds ``(line, reason)`` pairs, in line order; ``str()`` summarises.
    Nothing was changed.
    """

    def __init__(self, message: str, errors: list[tuple[int, str]]):
        super().__init__(message)
        self.errors = errors

    def json_fields(self) -> dict:
        """Extra fields for the ``{"error": ...}`` object that ``--json`` prints."""
        return {"errors": [{"line": line, "error": reason} for line, reason in self.errors]}


class InvalidTime(KioskError, ValueError):
    """A time given by an administrator that cannot be right (in the future, before the start)."""


class DaemonNotRunning(KioskError):
    """A command that needs the daemon (enrolment by tap) found none running."""
