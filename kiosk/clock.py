"""Time: UTC stamps, the API's timestamp format, and whether the clock can be trusted.

A Raspberry Pi has no hardware clock: until NTP has synchronised, the wall
clock holds whatever fake-hwclock restored. Taps made then carry a
``CLOCK_BOOTTIME`` reading and the boot id, so their true time can be computed
once the clock is trusted (same boot), or they are flagged for review (rebooted first).

Who says the clock is right (``clock.source``):

- ``kernel`` (the default): the kernel's NTP state, read with ``adjtimex()``
  (read-only, no privilege needed), as ``timedatectl`` shows it: synchronised
  while the maximum error the NTP daemon maintains stays below 16 s. It works
  with systemd-timesyncd, chrony and ntpd alike. systemd's ``timedated`` has
  judged by ``maxerror`` rather than the ``STA_UNSYNC`` flag since chrony
  sets that flag on purpose (to keep the kernel off the RTC); so do we.
- ``file``: ``clock.sync_file`` exists (systemd-timesyncd's
  ``/run/systemd/timesync/synchronized``).
- ``none``: the local clock is always trusted (``clock.sync_file = ""`` in
  configs from before ``clock.source``).

While that source says "not synchronised", TimeTrack is a second witness:
the ``Date`` header of its answers over verified TLS, taken htpdate-style
(the midpoint of the request's round trip, ±half of it and ±0.5 s for the
header's whole seconds). The measurement is kept as the true wall time at
boot (``CLOCK_BOOTTIME`` zero), so a later step of the local clock cannot
spoil it. Within ``clock.max_skew_seconds`` of the local clock, the local
clock is trusted as it is; further off, the local clock is wrong: taps are
held with their boottime, and :meth:`Clock.correct` gives them TimeTrack's
time (the correction is noted on each entry: :meth:`Clock.correction_note`).

    >>> clock = Clock(source="none")
    >>> clock.synced(), clock.summary()["source"]
    (True, 'none')
"""

from __future__ import annotations

import ctypes
import email.utils
import errno
import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kiosk.model import Stamp, from_iso, to_iso  # noqa: F401 - the storage form, re-exported

API_FORMAT = "%Y-%m-%dT%H:%M:%S"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
SOURCES = ("kernel", "file", "none")
MAXERROR_SYNCED_US = 16_000_000  # NTP_PHASE_LIMIT: the kernel's "never synchronised / lost it" maxerror
STA_UNSYNC = 0x0040
SAMPLE_MAX_UNCERTAINTY = 5.0  # seconds: a Date sample from a slower round trip is not used
DRIFT = 1e-4  # seconds per second an old sample is assumed to drift (100 ppm, a cheap crystal)


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


# ---------------------------------------------------------------- the kernel's NTP state


class _Timex(ctypes.Structure):
    """The leading fields of ``struct timex``, then room to spare.

    Only ``modes``..``status`` are read: they are ``unsigned int``, ``long`` x4,
    ``int`` on every Linux ABI (c_long is 8 bytes on 64-bit, 4 on 32-bit ARM,
    where the plain ``adjtimex`` symbol keeps the 32-bit-time layout). The
    kernel and glibc write the whole struct (208 bytes on 64-bit), so the
    buffer is made generously larger than any known layout.
    """

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_char * 512)]


_adjtimex: Any = None  # libc's adjtimex, looked up once


@dataclass(frozen=True)
class KernelTime:
    """The kernel's NTP state: ``synced`` as timedatectl's "System clock synchronized"."""

    synced: bool
    maxerror: float  # seconds
    esterror: float  # seconds
    status: int  # STA_* flags
    error: str = ""  # why it could not be read ("" when it was)


def kernel_time() -> KernelTime:
    """Read the kernel's NTP state with a read-only ``adjtimex()`` (``modes = 0``; glibc makes it the
    ``clock_adjtime`` system call, so a seccomp filter must allow that one: see systemd/kiosk.service).

    Never raises: an unreadable state (not Linux, a seccomp filter that refuses
    the call, values no layout could give) is "not synchronised" with ``error`` set.

        >>> kernel_time().synced in (True, False)
        True
    """
    global _adjtimex
    if _adjtimex is None:
        try:
            function = ctypes.CDLL(None, use_errno=True).adjtimex
        except (OSError, AttributeError) as exc:
            return KernelTime(False, 0.0, 0.0, 0, f"adjtimex unavailable ({exc})")
        function.argtypes = [ctypes.POINTER(_Timex)]
        function.restype = ctypes.c_int
        _adjtimex = function
    tx = _Timex()  # zeroed: modes 0 is a read
    if _adjtimex(ctypes.byref(tx)) == -1:
        code = ctypes.get_errno()
        return KernelTime(False, 0.0, 0.0, 0, f"adjtimex: {os.strerror(code) if code else 'failed'}"
                          + (" (a seccomp filter? allow adjtimex and clock_adjtime in the unit)" if code == errno.EPERM else ""))
    if not (0 <= tx.maxerror <= 10 * MAXERROR_SYNCED_US and 0 <= tx.esterror <= 10 * MAXERROR_SYNCED_US
            and 0 <= tx.status < 0x10000):
        return KernelTime(False, 0.0, 0.0, 0, "adjtimex gave values no struct timex layout can hold")
    return KernelTime(tx.maxerror < MAXERROR_SYNCED_US, tx.maxerror / 1e6, tx.esterror / 1e6, tx.status)


# ---------------------------------------------------------------- TimeTrack's Date header


@dataclass(frozen=True)
class Sample:
    """One reading of the server's clock: the true wall time at boot (epoch seconds at
    ``CLOCK_BOOTTIME`` 0), give or take ``uncertainty``, measured at boottime ``at``."""

    epoch_at_boot: float
    uncertainty: float
    at: float

    def error_at(self, now_boot: float) -> float:
        """The uncertainty grown by the drift since the sample was taken."""
        return self.uncertainty + DRIFT * max(0.0, now_boot - self.at)


def date_sample(date_header: str, sent: float, received: float) -> Sample | None:
    """A :class:`Sample` from a ``Date`` header and the request's boottimes; None if unusable.

    The server wrote its Date at some moment between ``sent`` and ``received``,
    truncated to the second: the midpoint, +0.5 s, with half the round trip and
    half a second of uncertainty (htpdate's method).
    """
    try:
        when = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None or received < sent:
        return None
    uncertainty = (received - sent) / 2 + 0.5
    if uncertainty > SAMPLE_MAX_UNCERTAINTY:
        return None
    return Sample(when.timestamp() + 0.5 - (sent + received) / 2, uncertainty, received)


# ---------------------------------------------------------------- the clock


class Clock:
    """Reads the wall clock and knows whether, and why, it can be trusted. Thread-safe.

    ``Clock(sync_file)`` keeps its old meaning ("" trusts the local clock, a path
    is the file check); ``source`` names one of :data:`SOURCES` explicitly.
    The daemon and the sender share one Clock (:func:`kiosk.app.build`): the
    sender feeds it TimeTrack's Date headers (:meth:`observe`), the daemon
    stamps taps and corrects held ones with it.
    """

    def __init__(self, sync_file: str = "", *, source: str | None = None, max_skew: float = 10.0,
                 server_date: bool = True, now=utcnow, kernel=kernel_time, boot=boottime):
        if source is None:
            source = "file" if sync_file else "none"
        if source not in SOURCES:
            raise ValueError(f"clock source must be one of {', '.join(SOURCES)}, not {source!r}")
        self.source, self.sync_file, self.max_skew, self.server_date = source, sync_file, max_skew, server_date
        self._now, self._kernel, self._boottime = now, kernel, boot
        self._boot = boot_id()
        self._lock = threading.Lock()
        self._sample: Sample | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Clock:
        """The clock that :class:`kiosk.config.ClockSettings` describe."""
        return cls(settings.sync_file, source=settings.source, max_skew=settings.max_skew_seconds,
                   server_date=settings.server_date)

    # ------------------------------------------------------------ sources

    def source_synced(self) -> bool:
        """What the configured source says, without TimeTrack's word."""
        if self.source == "none":
            return True
        if self.source == "file":
            return bool(self.sync_file) and os.path.exists(self.sync_file)
        return self._kernel().synced

    def observe(self, date_header: str, sent: float, received: float) -> None:
        """A ``Date`` header of TimeTrack's (verified TLS), with the request's boottimes.

        The sample in use is kept while later ones agree with it: both ends of an
        entry are then corrected from one reference, and its length is exactly
        what the boot clock measured. A new sample replaces it only when it is
        far more precise (the first came from a slow round trip, or has drifted
        for long), or disagrees beyond both uncertainties (the server's clock moved).
        """
        if not self.server_date:
            return
        sample = date_sample(date_header, sent, received)
        if sample is None:
            return
        with self._lock:
            old = self._sample
            if old is None:
                self._sample = sample
                return
            error = old.error_at(sample.at)
            disagree = abs(sample.epoch_at_boot - old.epoch_at_boot) > error + sample.uncertainty
            if disagree or sample.uncertainty < error / 2:
                self._sample = sample

    def sample_record(self) -> dict[str, Any] | None:
        """The sample in use, to be kept across a restart in this boot (see :meth:`restore`)."""
        with self._lock:
            sample = self._sample
        if sample is None or not self._boot:
            return None
        return {"boot": self._boot, "epoch_at_boot": sample.epoch_at_boot, "uncertainty": sample.uncertainty,
                "at": sample.at}

    def restore(self, record: Any) -> bool:
        """Take up a sample a previous daemon of this boot recorded (:meth:`sample_record`): corrections
        before and after a restart then share one reference. Anything else is ignored."""
        if not self.server_date or not isinstance(record, dict) or not self._boot or record.get("boot") != self._boot:
            return False
        try:
            sample = Sample(float(record["epoch_at_boot"]), float(record["uncertainty"]), float(record["at"]))
        except (KeyError, TypeError, ValueError):
            return False
        if not all(map(math.isfinite, (sample.epoch_at_boot, sample.uncertainty, sample.at))) \
                or not 0 < sample.uncertainty <= SAMPLE_MAX_UNCERTAINTY or sample.at > self._boottime():
            return False
        with self._lock:
            if self._sample is None:
                self._sample = sample
        return True

    def skew(self) -> float | None:
        """TimeTrack's time minus the local clock, in seconds (None: no Date seen yet)."""
        with self._lock:
            sample = self._sample
        if sample is None:
            return None
        return sample.epoch_at_boot + self._boottime() - self._now().timestamp()

    def wants_evidence(self) -> bool:
        """True while the source says unsynchronised and no Date has been seen: worth a request."""
        if not self.server_date or self.source_synced():
            return False
        with self._lock:
            return self._sample is None

    def _trust(self) -> tuple[bool, str, bool]:
        """(trusted, by which source, whether TimeTrack's offset must be applied)."""
        if self.source_synced():
            return True, self.source, False
        skew = self.skew() if self.server_date else None
        if skew is None:
            return False, self.source, False
        return True, "timetrack", abs(skew) > self.max_skew

    def synced(self) -> bool:
        """The true time is known: the source says so, or TimeTrack's Date vouches for it."""
        return self._trust()[0]

    # ------------------------------------------------------------ stamps

    def now(self) -> datetime:
        """The best estimate of the true time (TimeTrack's, when the local clock is known to be off)."""
        trusted, _, offset = self._trust()
        if offset:
            with self._lock:
                sample = self._sample
            if sample is not None:
                return datetime.fromtimestamp(sample.epoch_at_boot + self._boottime(), UTC)
        return self._now()

    def stamp(self) -> Stamp:
        """The moment of a tap. Its ``synced`` is False unless the local clock itself is trusted:
        while it is known to be off, the tap is held and :meth:`correct` gives its time."""
        trusted, _, offset = self._trust()
        return Stamp(self._now(), trusted and not offset, self._boottime(), self._boot)

    def correct(self, unsynced: dict) -> datetime | None:
        """True time of an unsynchronised stamp (``{"boottime", "boot"}``), or None when it
        cannot be known (not trusted yet, or stamped in another boot)."""
        trusted, _, offset = self._trust()
        if not trusted or unsynced.get("boot") != self._boot or not self._boot:
            return None
        boottime_then = float(unsynced["boottime"])
        if offset:
            with self._lock:
                sample = self._sample
            if sample is not None:
                return datetime.fromtimestamp(sample.epoch_at_boot + boottime_then, UTC)
        return self._now() - timedelta(seconds=self._boottime() - boottime_then)

    def correction_note(self) -> str:
        """What a correction by :meth:`correct` did, for the entry's ``notes_log``."""
        trusted, source, offset = self._trust()
        if offset:
            skew = self.skew() or 0.0
            return (f"times corrected by {skew:+.1f}s from TimeTrack's Date header "
                    f"(the local clock was off by more than {self.max_skew:g}s)")
        return f"times corrected from the boot clock once the clock was trusted ({source})"

    # ------------------------------------------------------------ status

    def summary(self) -> dict[str, Any]:
        """For ``kiosk status``, doctor and metrics: ``trusted``, ``source`` (the one trusted, or the
        configured one while untrusted), ``skew_seconds`` (None before TimeTrack's Date), ``offset_applied``
        (stamps get TimeTrack's time), ``configured`` (clock.source), ``detail`` (one line for people)
        and ``sample`` (:meth:`sample_record`, which the daemon keeps for a restart)."""
        trusted, source, offset = self._trust()
        skew = self.skew()
        detail = self._detail(trusted, source, offset, skew)
        return {"trusted": trusted, "source": source, "skew_seconds": None if skew is None else round(skew, 3),
                "offset_applied": offset, "configured": self.source, "detail": detail,
                "sample": self.sample_record()}

    def _detail(self, trusted: bool, source: str, offset: bool, skew: float | None) -> str:
        measured = f"; TimeTrack's clock differs by {skew:+.1f}s" if skew is not None else ""
        if source == "none":
            return "the local clock is trusted (clock.source = none)" + measured
        if source == "timetrack":
            how = (f"off by more than {self.max_skew:g}s: stamps get TimeTrack's time" if offset
                   else f"within {self.max_skew:g}s: the local clock is trusted")
            return f"{self._source_words()} not synchronised; TimeTrack's Date header vouches ({how}){measured}"
        if trusted:
            return f"{self._source_words()} synchronised" + measured
        waiting = ("no answer from TimeTrack yet to vouch for it" if self.server_date
                   else "clock.server_date = false")
        return f"{self._source_words()} not synchronised; {waiting}"

    def _source_words(self) -> str:
        if self.source == "file":
            return f"{self.sync_file}:"
        kernel = self._kernel()
        if kernel.error:
            return f"kernel NTP state unreadable ({kernel.error}):"
        return f"kernel NTP state (maxerror {kernel.maxerror:g}s):"
