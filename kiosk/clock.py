"""Time: UTC stamps, the API's timestamp format, and whether the clock is trustworthy.

A Raspberry Pi has no hardware clock: until NTP has synchronised, the wall
clock holds whatever fake-hwclock restored. Taps made then carry a
``CLOCK_BOOTTIME`` reading and the boot id, so their true time can be computed
once the clock syncs (same boot), or they are flagged for review (rebooted first).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from kiosk.model import Stamp, from_iso, to_iso  # noqa: F401 - the storage form, re-exported

API_FORMAT = "%Y-%m-%dT%H:%M:%S"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_api(dt: datetime, zone: str = "UTC") -> str:
    """``YYYY-MM-DDTHH:MM:SS.fffZ``; with zone "local", local wall-clock time written with a Z
    (some TimeTrack accounts expect that, see timetrack-api.md)."""
    dt = dt.astimezone(UTC) if zone == "UTC" else dt.astimezone()
    return dt.strftime(API_FORMAT) + f".{dt.microsecond // 1000:03d}Z"


def from_api(text: str, zone: str = "UTC") -> datetime:
    """Parse an API timestamp, with or without milliseconds."""
    if not text.endswith("Z"):
        raise ValueError(f"timestamp {text!r} does not end in Z")
    naive = datetime.fromisoformat(text[:-1])
    if naive.tzinfo is not None:
        raise ValueError(f"timestamp {text!r} has an offset and a Z")
    if zone == "UTC":
        return naive.replace(tzinfo=UTC)
    return naive.astimezone().astimezone(UTC)  # naive local -> aware UTC


def truncate_ms(dt: datetime) -> datetime:
    """Stamps are sent with millisecond precision; compare at that precision too."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def boottime() -> float:
    """Seconds since boot, counting suspend: the reference for unsynchronised taps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def boot_id() -> str:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class Clock:
    """Reads the wall clock and knows whether it is synchronised.

    ``sync_file`` exists once systemd-timesyncd has synchronised ("" = always trust).
    """

    def __init__(self, sync_file: str = "", *, now=utcnow):
        self.sync_file = sync_file
        self._now = now
        self._boot = boot_id()

    def synced(self) -> bool:
        return not self.sync_file or os.path.exists(self.sync_file)

    def stamp(self) -> Stamp:
        return Stamp(self._now(), self.synced(), boottime(), self._boot)

    def correct(self, unsynced: dict) -> datetime | None:
        """True time of an unsynchronised stamp, or None when it cannot be known (other boot)."""
        if not self.synced() or unsynced.get("boot") != self._boot or not self._boot:
            return None
        return self._now() - timedelta(seconds=boottime() - float(unsynced["boottime"]))
