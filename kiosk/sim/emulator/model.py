"""The emulated data: attendance entries, their validation, filters and paging.

Everything here follows the project's notes on TimeTrack's API docs
(timetrack-api.md) and accepts every reading the docs allow where they
contradict themselves: ``user``/``username``, ``minutesBreak``/``breakMinutes``,
``details``/``notes``, timestamps with or without milliseconds. Unknown fields
and query parameters are refused, to catch client typos the real service would
silently ignore. No HTTP here: :class:`Attendances` answers API-shaped dicts or
raises :class:`ApiError`, and the handler turns both into answers.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: The one error code the docs give: a read of a deleted entry.
CODE_DELETED = 15020
DELETED_TITLE = "TimeEntry exist but it is deleted"
# Every other error uses its HTTP status as its code: the docs list no others,
# and a client must not depend on undocumented codes.

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")


# --------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error answer in the documented shape: ``{"errors": [{title, status, code, detail}]}``."""

    def __init__(self, status: int, title: str, detail: str, code: int | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.code = status if code is None else code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        """The JSON answer body."""
        return {"errors": [{"title": self.title, "status": self.status, "code": self.code, "detail": self.detail}]}


def bad_request(detail: str) -> ApiError:
    """A 400 saying what is wrong with the request."""
    return ApiError(400, "Bad request", detail)


def not_found(entry_id: int | str) -> ApiError:
    """A 404 for an entry that never existed (a deleted one has its own code)."""
    return ApiError(404, "Not found", f"no attendance time entry with ID {entry_id}")


# --------------------------------------------------------------------------
# Timestamps


def parse_timestamp(value: Any, field: str) -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.fff]Z`` into a naive datetime.

    Naive on purpose: some TimeTrack accounts write local wall-clock time with
    a "Z" (see the API notes), so the emulator compares and stores what it was
    given without any zone conversion. A bad value is a 400 naming ``field``.
    """
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise bad_request(
            f"{field}: expected a timestamp like 2020-10-17T10:00:00.000Z or 2020-10-17T10:00:00Z, got {value!r}"
        )
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(
            microsecond=int(value[20:23] or 0) * 1000
        )
    except ValueError as e:
        raise bad_request(f"{field}: {value!r} is not a valid date and time ({e})") from None


def format_timestamp(value: datetime) -> str:
    """The answer format: always with milliseconds, always with "Z"."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------
# Fields

# Input field -> stored field. Both spellings of the contradicting names are accepted.
_ALIASES = {
    "minutesBreak": "breakMinutes",
    "breakMinutes": "breakMinutes",
    "details": "notes",
    "notes": "notes",
}
COORDINATES = ("latitudeStart", "longitudeStart", "latitudeEnd", "longitudeEnd")
# Computed or assigned by the server: accepted (any object field may be sent) and ignored.
_READ_ONLY = ("ID", "workedMinutes")
UPDATABLE = ("from", "to", "manual", *_ALIASES, *COORDINATES, *_READ_ONLY)
_CREATABLE = ("username", "user", *UPDATABLE)
#: The stored form of a record: the fields every entry of a data file has.
STORED = ("ID", "user", "from", "to", "notes", "manual", "breakMinutes", *COORDINATES, "deleted")


def span(record: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """A stored record's (from, to), parsed."""
    return parse_timestamp(record["from"], "from"), parse_timestamp(record["to"], "to")


def public(record: Mapping[str, Any], span_: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    """A stored record as the API answers it, with the documented field names.

    ``span_``: the record's parsed (from, to), if known (:class:`Attendances` keeps them)."""
    start, end = span_ if span_ is not None else span(record)
    minutes = int((end - start).total_seconds() // 60)
    return {
        "ID": record["ID"],
        "user": record["user"],
        "from": record["from"],
        "to": record["to"],
        "notes": record["notes"],
        "manual": record["manual"],
        "workedMinutes": minutes - record["breakMinutes"],
        "breakMinutes": record["breakMinutes"],
        **{name: record[name] for name in COORDINATES},
    }


def apply_fields(record: dict[str, Any], body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Validate ``body`` and copy its fields into ``record`` (the stored form); ApiError (400) if bad."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field {', '.join(unknown)} (accepted: {', '.join(allowed)})")
    for a, b in (("minutesBreak", "breakMinutes"), ("details", "notes")):
        if a in body and b in body and body[a] != body[b]:
            raise bad_request(f"{a} and {b} name the same field but differ: {body[a]!r} vs {body[b]!r}")
    for name in ("from", "to"):
        if name in body:
            record[name] = format_timestamp(parse_timestamp(body[name], name))
    for name, value in body.items():
        target = _ALIASES.get(name)
        if target == "breakMinutes":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad_request(f"{name}: expected a whole number of minutes, 0 or more, got {value!r}")
            record["breakMinutes"] = value
        elif target == "notes":
            if value is not None and not isinstance(value, str):
                raise bad_request(f"{name}: expected text, got {value!r}")
            record["notes"] = value or ""
        elif name == "manual":
            if not isinstance(value, bool):
                raise bad_request(f"manual: expected true or false, got {value!r}")
            record["manual"] = value
        elif name in COORDINATES:
            record[name] = _coordinate(name, value)
    start, end = parse_timestamp(record["from"], "from"), parse_timestamp(record["to"], "to")
    if end <= start:
        raise bad_request(f"to ({record['to']}) must be after from ({record['from']})")
    if record["breakMinutes"] * 60 > (end - start).total_seconds():
        raise bad_request(
            f"breakMinutes ({record['breakMinutes']}) is longer than the entry ({record['from']} to {record['to']})"
        )


def _coordinate(name: str, value: Any) -> float | str | None:
    """The docs type coordinates as number/text: keep what was sent, if it is a number."""
    if value is None:
        return None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            if math.isfinite(float(value)):
                return value
        except ValueError:
            pass
    raise bad_request(f"{name}: expected a number, got {value!r}")


# --------------------------------------------------------------------------
# The entries


class Durable(Protocol):
    """Where committed records go before they count (see persistence.DataFile)."""

    def write(self, lines: Iterable[str], next_id: int) -> None:
        """Replace everything stored with these JSON lines; OSError if that cannot be done."""


class Attendances:
    """The account's attendance entries: create, read, update, delete, filtered and paged lists.

    Records are kept by ID in ID order (IDs only grow; an update keeps the
    place), with their parsed (from, to) and their JSON text (one line of the
    data file) alongside, so a change costs O(1) in memory and a list is one
    pass without parsing, building answers for the requested page only.
    With ``durable`` every change is written there first: when that raises
    OSError, nothing changed. ``users``, when given, is the account's user
    list: creates for anyone else are a permanent 400.

        >>> entries = Attendances()
        >>> entries.create({"username": "anna", "from": "2020-10-17T10:00:00Z",
        ...                 "to": "2020-10-17T14:00:00Z"})["workedMinutes"]
        240
        >>> [e["ID"] for e in entries.list({"username": "anna"})]
        [1]

    Thread-safe: every method takes ``lock`` (an RLock shared with the emulator).
    """

    def __init__(self, *, users: Iterable[str] | None = None, durable: Durable | None = None,
                 lock: threading.RLock | None = None) -> None:
        self.users = frozenset(users) if users is not None else None
        self.durable = durable
        self.on_create: Callable[[dict[str, Any]], None] | None = None
        self.lock = lock if lock is not None else threading.RLock()
        self.creates = 0
        self.replace({}, 1)

    def replace(self, records: Mapping[int, dict[str, Any]], next_id: int) -> None:
        """Take ``records`` (stored form, already checked) as the whole content, e.g. a loaded data file."""
        with self.lock:
            self._entries = {i: records[i] for i in sorted(records)}
            self._spans = {i: span(r) for i, r in self._entries.items()}
            self._lines = {i: json.dumps(r) for i, r in self._entries.items()}
            self._next_id = next_id

    def clear(self) -> None:
        """Forget every entry (durably first) and restart IDs at 1."""
        with self.lock:
            if self.durable is not None:
                self.durable.write((), 1)
            self.replace({}, 1)
            self.creates = 0

    def live_count(self) -> int:
        """How many entries are not deleted."""
        with self.lock:
            return sum(not r["deleted"] for r in self._entries.values())

    def all(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """A copy of the entries in API form plus a ``deleted`` flag, by ID."""
        with self.lock:
            spans = self._spans
            return [{**public(r, spans[i]), "deleted": r["deleted"]} for i, r in self._entries.items()
                    if include_deleted or not r["deleted"]]

    def list(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET /attendances`` with its query parameters: filters (``username`` or ``user``,
        ``from``, ``to``: the entry lies within) and paging (``page_number``, ``limit``)."""
        unknown = sorted(set(params) - {"username", "user", "from", "to", "page_number", "limit"})
        if unknown:
            raise bad_request(
                f"unknown query parameter {', '.join(unknown)} (accepted: username or user, from, to, page_number, limit)"
            )
        if "username" in params and "user" in params and params["username"] != params["user"]:
            raise bad_request("username and user name the same filter but differ")
        user = params.get("username", params.get("user"))
        if user == "":
            raise bad_request("username: must not be empty")
        start = parse_timestamp(params["from"], "from") if "from" in params else None
        end = parse_timestamp(params["to"], "to") if "to" in params else None
        page = _int_param(params, "page_number", 0, 0)
        limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        skip = page * limit
        rows: list[dict[str, Any]] = []
        with self.lock:  # one pass in ID order, no parsing; answers built for the page only
            spans = self._spans
            for entry_id, r in self._entries.items():
                if r["deleted"] or (user is not None and r["user"] != user):
                    continue
                entry_span = spans[entry_id]
                if (start is not None and entry_span[0] < start) or (end is not None and entry_span[1] > end):
                    continue
                if skip:
                    skip -= 1
                    continue
                rows.append(public(r, entry_span))
                if len(rows) == limit:
                    break
        return rows

    def read(self, entry_id: int) -> dict[str, Any]:
        """``GET /attendances/{id}``: 404, with code 15020 when deleted."""
        with self.lock:
            return public(self._live(entry_id), self._spans[entry_id])

    def create(self, body: Any) -> dict[str, Any]:
        """``POST /attendances``: validate, store durably, return the new entry in API form."""
        if not isinstance(body, dict):
            raise bad_request("body: expected a JSON object with username, from and to")
        missing = [name for name in ("username", "from", "to") if name not in body]
        if missing:
            raise bad_request(f"missing required field {', '.join(missing)}")
        username = body["username"]
        if not isinstance(username, str) or not username.strip():
            raise bad_request(f"username: expected a non-empty text, got {username!r}")
        if "user" in body and body["user"] != username:
            raise bad_request(f"user ({body['user']!r}) and username ({username!r}) differ")
        if self.users is not None and username not in self.users:
            raise ApiError(400, "Unknown user", f"there is no user {username!r} in this account")
        record: dict[str, Any] = {
            "ID": 0, "user": username, "from": None, "to": None, "notes": "", "manual": True,
            "breakMinutes": 0, **dict.fromkeys(COORDINATES), "deleted": False,
        }
        apply_fields(record, body, _CREATABLE)
        with self.lock:
            record["ID"] = self._next_id
            self._commit(record, self._next_id + 1)
            self.creates += 1
            entry = public(record, self._spans[record["ID"]])
        log.info("created attendance %s for %s", entry["ID"], entry["user"])
        if self.on_create is not None:
            try:
                self.on_create(dict(entry))
            except Exception:
                log.exception("on_create callback failed")
        return entry

    def update(self, entry_id: int, body: Any) -> dict[str, Any]:
        """``PUT /attendances/{id}``: any field but the user."""
        if not isinstance(body, dict):
            raise bad_request("body: expected a JSON object with the fields to change")
        for name in ("username", "user"):
            if name in body:
                raise bad_request(f"{name} cannot be changed: delete the entry and create a new one")
        with self.lock:
            record = dict(self._live(entry_id))  # a copy: the stored one changes only once durable
            apply_fields(record, body, UPDATABLE)
            self._commit(record, self._next_id)
            return public(record, self._spans[entry_id])

    def delete(self, entry_id: int) -> dict[str, Any]:
        """``DELETE /attendances/{id}``: marked deleted, never erased."""
        with self.lock:
            record = {**self._live(entry_id), "deleted": True}
            self._commit(record, self._next_id)
            return public(record, self._spans[entry_id])

    # -- internals

    def _live(self, entry_id: int) -> dict[str, Any]:
        record = self._entries.get(entry_id)
        if record is None:
            raise not_found(entry_id)
        if record["deleted"]:
            raise ApiError(404, DELETED_TITLE, f"time entry {entry_id} was deleted", code=CODE_DELETED)
        return record

    def _commit(self, record: dict[str, Any], next_id: int) -> None:
        """Make one new or changed record durable, then current: on OSError nothing changed.

        O(1) in memory (amortised); with a data file, the file is rewritten whole
        from the records' cached JSON lines.
        """
        entry_id = record["ID"]
        line = json.dumps(record)
        if self.durable is not None:
            self.durable.write(self._file_lines(entry_id, line), next_id)
        self._entries[entry_id] = record  # a new ID is the highest: ID order is kept
        self._spans[entry_id] = span(record)
        self._lines[entry_id] = line
        self._next_id = next_id

    def _file_lines(self, entry_id: int, line: str) -> Iterable[str]:
        """The data file's entry lines with ``entry_id``'s line new or replaced."""
        lines = self._lines
        yield from (line if i == entry_id else text for i, text in lines.items())
        if entry_id not in lines:
            yield line


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    text = params.get(name)
    if text is None:
        return default
    value = int(text) if re.fullmatch(r"[0-9]{1,9}", text) else -1
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise bad_request(f"{name}: expected a whole number {bound}, got {text!r}")
    return value
