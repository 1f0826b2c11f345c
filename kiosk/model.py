"""The kiosk's records, as typed values, and their stored form.

The store keeps each record as a JSON object under a key (see
:mod:`kiosk.store`); these dataclasses are what every other module handles.
Each has ``from_record(dict)`` and ``to_record() -> dict``, the one place where
a record's stored field names live. Times are aware UTC datetimes here and ISO
8601 strings (microseconds, ``+00:00``) on disk; unknown stored fields are kept
in ``extra`` and written back, so a newer kiosk's additions survive an older one.

    >>> entry = OutboxEntry(id=7, username="anna", uid="04A1B2C3",
    ...                     start=from_iso("2026-11-30T08:00:00+00:00"), end=from_iso("2026-11-30T16:30:00+00:00"))
    >>> entry.to_record()["from"], entry.held
    ('2026-11-30T08:00:00.000000+00:00', False)
    >>> OutboxEntry.from_record(entry.to_record()) == entry
    True
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self


def to_iso(dt: datetime) -> str:
    """Storage form: ISO 8601 UTC with microseconds (a lossless round trip)."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """An aware UTC datetime from the storage form (a naive one is taken as UTC)."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _opt_time(value: Any) -> datetime | None:
    return from_iso(value) if isinstance(value, str) and value else None


def _opt_iso(value: datetime | None) -> str | None:
    return to_iso(value) if value is not None else None


@dataclass(frozen=True)
class Stamp:
    """A moment as the kiosk saw it: the wall clock, whether it was trusted, and the
    monotonic reading (``CLOCK_BOOTTIME``) and boot id that compare moments within one boot."""

    at: datetime
    synced: bool
    boottime: float | None
    boot: str

    def same_boot(self, boot: str) -> bool:
        return bool(self.boot) and self.boot == boot


log = logging.getLogger("kiosk.store")
_ABSENT = object()
_DAMAGED_SEEN: set[str] = set()
_SIMPLE = {str: (str,), int: (int,), float: (float, int), bool: (bool,), datetime: (datetime,), dict: (dict,),
           list: (list,), type(None): (type(None),)}


def damaged(where: str, why: str) -> None:
    """Log a record that cannot be read (once per record): what it is and why, never its content."""
    if where in _DAMAGED_SEEN or len(_DAMAGED_SEEN) > 10_000:
        return
    _DAMAGED_SEEN.add(where)
    log.warning("store record %s cannot be read and is left alone: %s", where, why)


def _field_types(cls: type) -> dict[str, tuple[type, ...]]:
    """Per field, the types its value may have (fields typed ``Any`` or otherwise left out), made once per class."""
    cached = cls.__dict__.get("_TYPES")
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = {}
        for f in dataclasses.fields(cls):
            allowed: list[type] = []
            hint = hints[f.name]
            union = typing.get_origin(hint) in (typing.Union, types.UnionType)
            for hint in typing.get_args(hint) if union else (hint,):
                simple = _SIMPLE.get(typing.get_origin(hint) or hint)
                if simple is None:
                    allowed = []
                    break
                allowed.extend(simple)
            if allowed and f.name != "extra":
                cached[f.name] = tuple(allowed)
        setattr(cls, "_TYPES", cached)  # noqa: B010 - a class-level cache
    return cached


class _Record:
    """Shared conversion: dataclass fields <-> the stored dict (``KEYS`` renames, ``TIMES`` are datetimes)."""

    KEYS: ClassVar[dict[str, str]] = {}  # attribute -> stored key, where they differ
    TIMES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _layout(cls) -> tuple[dict[str, str], tuple[tuple[str, str, bool], ...]]:
        """(stored key -> attribute, and per attribute: (attribute, stored key, is a time)), made once per class."""
        layout = cls.__dict__.get("_LAYOUT")
        if layout is None:
            names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]  # type: ignore[arg-type]
            columns = tuple((n, cls.KEYS.get(n, n), n in cls.TIMES) for n in names)
            layout = ({key: name for name, key, _ in columns}, columns)
            setattr(cls, "_LAYOUT", layout)  # noqa: B010 - a class-level cache, not a dataclass field
        return layout

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        stored, columns = cls._layout()
        times = cls.TIMES
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in record.items():
            name = stored.get(key)
            if name is None:
                extra[key] = value
            elif name in times:
                values[name] = _opt_time(value)
            else:
                values[name] = value
        return cls(**values, extra=extra)  # type: ignore[call-arg]

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)  # type: ignore[attr-defined]
        for name, key, is_time in self._layout()[1]:
            value = getattr(self, name)
            out[key] = _opt_iso(value) if is_time else value
        return out

    @classmethod
    def parse(cls, record: Any, where: str = "") -> Self | None:
        """The record, or None when ``record`` is not one (damaged, or planted by whoever can write
        the file): reported once in the log, never raised, so one bad record stops nothing else."""
        problem = cls._shape_problem(record)
        if not problem:
            try:
                return cls.from_record(record)
            except (TypeError, ValueError, OverflowError) as exc:  # e.g. a time that is not ISO 8601
                problem = str(exc)
        damaged(where or cls.__name__, f"not a {cls.__name__} ({problem})")
        return None

    @classmethod
    def readable(cls, record: Any, where: str = "") -> bool:
        """Whether ``record`` has this record's shape (a cheap check of the stored form, for listings
        that stream records as stored): required keys present, values of the right kind, times as text.
        A record that is not is reported once in the log, like :meth:`parse` does."""
        problem = cls._shape_problem(record)
        if problem:
            damaged(where or cls.__name__, f"not a {cls.__name__} ({problem})")
        return not problem

    @classmethod
    def _shape_problem(cls, record: Any) -> str:
        """What makes ``record`` not a stored form of this class ("" when nothing does)."""
        if not isinstance(record, dict):
            return f"a JSON {type(record).__name__}, not an object"
        for stored, required, expected, blank_ok in cls._shape():
            value = record.get(stored, _ABSENT)
            if value is _ABSENT:
                if required:
                    return f"no {stored}"
            elif expected and (not isinstance(value, expected) or (value is True or value is False)
                               and bool not in expected):
                return f"{stored} is a {type(value).__name__}"
            elif value == "" and not blank_ok:  # a time that must be there reads "" as none
                return f"{stored} is empty"
        return ""

    @classmethod
    def _shape(cls) -> tuple[tuple[str, bool, tuple[type, ...], bool], ...]:
        """Per stored key: (key, required, the kinds its stored value may be, whether "" will do),
        made once per class."""
        shape = cls.__dict__.get("_SHAPE")
        if shape is None:
            kinds = _field_types(cls)
            shape = []
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                if f.name == "extra":
                    continue
                required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                expected = kinds.get(f.name, ())
                blank_ok = True
                if f.name in cls.TIMES:  # stored as ISO text; "" reads as None
                    blank_ok = type(None) in expected
                    expected = (str, type(None)) if blank_ok else (str,)
                shape.append((cls.KEYS.get(f.name, f.name), required, expected, blank_ok))
            shape = tuple(shape)
            setattr(cls, "_SHAPE", shape)  # noqa: B010 - a class-level cache
        return shape

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class Badge(_Record):
    """A badge mapped to a TimeTrack username."""

    TIMES = ("added_at", "updated_at")

    uid: str
    username: str
    enabled: bool = True
    label: str = ""
    added_at: datetime | None = None
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class OpenClockIn(_Record):
    """Someone clocked in and not yet out. ``boottime``/``boot`` compare it with later taps in
    the same boot (immune to wall-clock steps); ``synced`` False means ``since`` waits for correction."""

    TIMES = ("since",)

    username: str
    since: datetime
    uid: str = ""
    synced: bool = True
    boottime: float | None = None
    boot: str = ""
    clock_corrected: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        record = dict(record)
        record["synced"] = not record.pop("unsynced", False) and record.get("synced", True)
        return super().from_record(record)

    def to_record(self) -> dict[str, Any]:
        out = super().to_record()
        synced = out.pop("synced")
        if not synced:
            out["unsynced"] = True
        return out


@dataclass(frozen=True)
class OutboxEntry(_Record):
    """One complete attendance entry waiting for TimeTrack (or, with ``server_id``, delivered).

    ``start_unsynced``/``end_unsynced`` hold ``{"boottime", "boot"}`` of an end
    stamped before the clock could be trusted: such an entry is :attr:`held`
    until its times are corrected. ``notes_log`` lists what the kiosk did to the
    times (a clock step, a correction), for the sysadmin.
    """

    KEYS = {"start": "from", "end": "to", "start_unsynced": "from_unsynced", "end_unsynced": "to_unsynced"}
    TIMES = ("start", "end", "queued_at", "last_attempt", "next_attempt", "ambiguous_at")

    id: int
    username: str
    uid: str
    start: datetime
    end: datetime
    notes: str = ""
    kiosk: str = ""
    queued_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    last_attempt: datetime | None = None
    next_attempt: datetime | None = None
    ambiguous: bool = False
    ambiguous_at: datetime | None = None
    start_unsynced: dict | None = None
    end_unsynced: dict | None = None
    clock_corrected: bool = False
    notes_log: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def held(self) -> bool:
        """Stamped before the clock could be trusted: never sent until the store corrects it."""
        return bool(self.start_unsynced or self.end_unsynced)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class RejectedEntry(OutboxEntry):
    """An entry TimeTrack refused for good (4xx), kept for a sysadmin to fix and retry, or drop."""

    TIMES = OutboxEntry.TIMES + ("rejected_at",)

    status: int | None = None
    reason: str = ""
    rejected_at: datetime | None = None


@dataclass(frozen=True)
class DeliveredEntry(OutboxEntry):
    """An entry TimeTrack confirmed; kept for ``kiosk.history_days``."""

    TIMES = OutboxEntry.TIMES + ("delivered_at",)

    server_id: Any = None
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class FlaggedRecord(_Record):
    """An open clock-in or an entry set aside for review (a forgotten clock-out, unknowable times).

    ``was`` says what it was (``open`` or ``outbox``) and ``record`` holds it as stored.
    """

    TIMES = ("flagged_at",)

    id: int
    was: str
    reason: str
    flagged_at: datetime | None = None
    record: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def username(self) -> str:
        return str(self.record.get("username", ""))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        if "record" not in record:  # the first schema kept the flagged record's fields inline
            inner = {k: v for k, v in record.items() if k not in ("id", "was", "reason", "flagged_at")}
            record = {k: record[k] for k in ("id", "was", "reason", "flagged_at") if k in record} | {"record": inner}
        return super().from_record(record)


@dataclass(frozen=True)
class AuditLine(_Record):
    """One line of the audit log: a tap and its outcome, or an admin's change (``kind``, ``fields``)."""

    TIMES = ("at",)

    id: int
    at: datetime
    kind: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=True)

    @property
    def fields(self) -> dict[str, Any]:
        return self.extra
