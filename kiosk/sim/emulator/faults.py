"""Fault settings and the per-request decisions: which failure strikes this request.

:class:`Faults` holds the settings (all off by default), parsed from the
command line (``--fault name=value``) or from JSON (``PUT /_emulator/faults``).
:class:`Dice` makes the decisions, with a seeded random source and the
``max_faults`` budget, and counts what fired for ``/_emulator/stats``. How a
decision turns into bytes on the wire is the handler's business (handler.py),
and what a proxy or portal page looks like is in answers.py.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .model import ApiError

log = logging.getLogger(__name__)

_PROBABILITIES = ("error_rate", "rate_limit", "drop_after_store", "drop_before_store", "gateway_error",
                  "gateway_down")
_SECONDS = ("latency", "slow_body", "dribble_head", "dribble_body")
_BOOLS = ("unauthorized", "create_body", "echo_headers", "oversize_chunked")
_CHOICES: dict[str, tuple[Any, ...]] = {
    "create_status": (200, 201),
    "gateway_status": (0, 502, 503, 504),
    "captive_portal": ("off", "page", "redirect", "511"),
}
#: date_offset bound: a century either way is already absurd; beyond, it is a typo.
MAX_DATE_OFFSET = 100 * 365.25 * 86400
#: The statuses a gateway answers when ``gateway_status`` is 0 (drawn per request).
GATEWAY_STATUSES = (502, 503, 504)


@dataclass(frozen=True)
class Faults:
    """Failure injection and answer variants, all off by default.

    Probabilities (0..1, per API request): ``error_rate`` (500/502/503 in the
    documented JSON shape, nothing stored), ``rate_limit`` (429 with
    ``Retry-After: retry_after``), ``drop_before_store`` (connection closed
    unanswered, nothing stored), ``drop_after_store`` (a POST is stored, then
    the connection is closed unanswered), ``gateway_error`` (the request is
    handled and stored, then a proxy's HTML error page replaces the answer:
    ``gateway_status`` 502, 503 or 504, or 0 for one of them at random),
    ``gateway_down`` (the same page, but the proxy never forwarded the request:
    nothing stored).

    Seconds, applied to every API request while non-zero: ``latency`` (the
    connection is accepted and the request read at once; the answer starts
    after this long), ``slow_body`` (headers at once, the body spread over this
    long in 8 pieces), ``dribble_body`` (headers at once, then the body one
    byte every this long), ``dribble_head`` (the status line and headers
    themselves one byte every this long). ``date_offset`` (seconds, either
    sign) shifts the ``Date`` header of every answer.

    ``unauthorized`` answers every API request 401; ``captive_portal``
    ("page", "redirect" or "511") puts a portal in front of the API that
    answers every API request itself and stores nothing; ``echo_headers``
    makes every error answer but a portal's echo the request headers
    (credentials included); ``oversize`` (bytes, 0 off) pads every API
    answer's body to at least that size, generated while sent, with
    ``Content-Length`` or, with ``oversize_chunked``, chunked.

    ``seed`` makes the random draws repeatable; after ``max_faults`` injected
    faults (each fired fault counts one, latency included) the emulator behaves
    normally until faults are set again. ``create_status`` (201 or 200) and
    ``create_body`` (False: empty body) are not faults: the docs do not say
    what POST answers, so the client must accept every variant. They never
    consume the budget, and neither does ``date_offset`` (a server clock, not
    a per-request fault: it is counted, and stays while the budget is spent).

    Admin endpoints (``/_emulator/...``) are never faulted, so faults can always
    be switched off again (their ``Date`` header is offset too).

        >>> Faults.parse(["gateway_error=0.2", "gateway_status=503"]).active()
        {'gateway_error': 0.2, 'gateway_status': 503}
    """

    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit: float = 0.0
    retry_after: int = 1
    unauthorized: bool = False
    drop_after_store: float = 0.0
    drop_before_store: float = 0.0
    slow_body: float = 0.0
    gateway_error: float = 0.0
    gateway_status: int = 0
    gateway_down: float = 0.0
    captive_portal: str = "off"
    dribble_head: float = 0.0
    dribble_body: float = 0.0
    oversize: int = 0
    oversize_chunked: bool = False
    echo_headers: bool = False
    date_offset: float = 0.0
    seed: int | None = None
    max_faults: int | None = None
    create_status: int = 201
    create_body: bool = True

    def __post_init__(self) -> None:
        for name in _PROBABILITIES + _SECONDS + ("date_offset",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"fault {name}: expected a number, got {value!r}")
            if name == "date_offset":
                if abs(value) > MAX_DATE_OFFSET:
                    raise ValueError(f"fault date_offset: expected seconds within ±{MAX_DATE_OFFSET:.0f}, got {value!r}")
            elif value < 0 or (name in _PROBABILITIES and value > 1):
                limits = "a probability from 0 to 1" if name in _PROBABILITIES else "seconds, 0 or more"
                raise ValueError(f"fault {name}: expected {limits}, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"fault {name}: expected true or false, got {getattr(self, name)!r}")
        for name, optional in (("retry_after", False), ("oversize", False), ("seed", True), ("max_faults", True)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or (name != "seed" and value < 0):
                raise ValueError(f"fault {name}: expected a whole number, 0 or more, got {value!r}")
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or value not in allowed or type(value) is not type(allowed[0]):
                raise ValueError(f"fault {name}: expected {' or '.join(map(str, allowed))}, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Build from JSON-like data; unknown names are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise ValueError(f"faults: expected an object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown fault {', '.join(unknown)} (known: {', '.join(cls.names())})")
        return cls(**data)

    @classmethod
    def parse(cls, items: Iterable[str]) -> Faults:
        """Build from command-line ``name=value`` strings (``--fault error_rate=0.2``)."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            name, text = name.strip(), text.strip()
            if not sep or not name:
                raise ValueError(f"fault {item!r}: expected name=value, e.g. error_rate=0.2")
            if name not in types:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(cls.names())})")
            values[name] = _parse_value(name, str(types[name]), text)
        return cls.from_dict(values)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every setting's name, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """All settings as JSON-ready data (what ``GET /_emulator/faults`` answers)."""
        return dataclasses.asdict(self)

    def active(self) -> dict[str, Any]:
        """The settings that differ from the defaults (for the start line and logs)."""
        default = Faults()
        return {k: v for k, v in self.to_dict().items() if v != getattr(default, k)}


def _parse_value(name: str, type_: str, text: str) -> Any:
    lowered = text.lower()
    if type_ == "bool":
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"fault {name}={text}: expected true or false")
    if type_ == "str":
        return lowered
    if "None" in type_ and lowered in ("none", "null", ""):
        return None
    try:
        return float(text) if type_ == "float" else int(text)
    except ValueError:
        kind = "a number" if type_ == "float" else "a whole number"
        raise ValueError(f"fault {name}={text}: expected {kind}") from None


@dataclass(frozen=True)
class Shape:
    """How one answer goes out on the wire (decided once per answer, see :meth:`Dice.shape`)."""

    date_offset: float = 0.0
    head_pause: float = 0.0  # seconds before each byte of the status line and headers
    body_piece: int = 0  # body bytes per piece (0: the whole body at once)
    body_pause: float = 0.0  # seconds before each piece
    slow_total: float = 0.0  # slow_body: the body spread over this long in 8 pieces
    oversize: int = 0  # pad the body to at least this many bytes
    chunked: bool = False


class Dice:
    """The fault decisions for one emulator, thread-safe.

    Each method answers one question about the request at hand, draws from
    the seeded random source when the fault is a probability, spends the
    ``max_faults`` budget and counts the fault by name when it strikes.

        >>> dice = Dice(Faults(gateway_error=1.0, gateway_status=504, max_faults=1))
        >>> dice.gateway(), dice.gateway()
        (504, None)
        >>> dice.fired()
        {'gateway_error': 1}
    """

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.set(faults or Faults())

    @property
    def faults(self) -> Faults:
        """The current settings."""
        return self._faults

    def set(self, faults: Faults) -> None:
        """New settings; restarts the random source (``seed``) and the budget. Counts stay."""
        with self._lock:
            self._faults = faults
            self._random = random.Random(faults.seed)
            self._spent = 0

    def fired(self) -> dict[str, int]:
        """How often each fault struck since the last :meth:`clear_counts`."""
        with self._lock:
            return dict(self._counts)

    def remaining(self) -> int | None:
        """What is left of the ``max_faults`` budget (None: no budget)."""
        with self._lock:
            budget = self._faults.max_faults
            return None if budget is None else max(budget - self._spent, 0)

    def clear_counts(self) -> None:
        """Forget the counts (``POST /_emulator/reset``); settings and budget stay."""
        with self._lock:
            self._counts.clear()

    def fire(self, kind: str, probability: float) -> bool:
        """Decide whether fault ``kind`` strikes this request, within the budget."""
        if probability <= 0:
            return False
        with self._lock:
            budget = self._faults.max_faults
            if budget is not None and self._spent >= budget:
                return False
            if probability < 1 and self._random.random() >= probability:
                return False
            self._spent += 1
            self._counts[kind] += 1
        log.debug("fault injected: %s", kind)
        return True

    def _choice(self, options: tuple[int, ...]) -> int:
        with self._lock:
            return self._random.choice(options)

    # -- the decisions, in the order the handler asks them

    def latency(self) -> float:
        """Seconds to wait before answering this API request (0: none)."""
        seconds = self._faults.latency
        return seconds if seconds and self.fire("latency", 1.0) else 0.0

    def portal(self) -> str | None:
        """The captive portal's answer mode for this request ("page", "redirect", "511"), or None."""
        mode = self._faults.captive_portal
        return mode if mode != "off" and self.fire("captive_portal", 1.0) else None

    def gateway_down(self) -> int | None:
        """The status a gateway sends without forwarding this request, or None."""
        faults = self._faults
        if not self.fire("gateway_down", faults.gateway_down):
            return None
        return faults.gateway_status or self._choice(GATEWAY_STATUSES)

    def drop_before_store(self) -> bool:
        """Close this request's connection unanswered, before anything is stored."""
        return self.fire("drop_before_store", self._faults.drop_before_store)

    def early_error(self) -> ApiError | None:
        """An error answer instead of handling the request: error_rate, rate_limit, unauthorized."""
        faults = self._faults
        if self.fire("error_rate", faults.error_rate):
            status = self._choice((500, 502, 503))
            return ApiError(status, HTTPStatus(status).phrase, f"emulator fault injection: error_rate ({status})")
        if self.fire("rate_limit", faults.rate_limit):
            return ApiError(429, "Too many requests", "emulator fault injection: rate_limit",
                            headers={"Retry-After": str(faults.retry_after)})
        if faults.unauthorized and self.fire("unauthorized", 1.0):
            return ApiError(401, "Unauthorized", "emulator fault injection: unauthorized")
        return None

    def drop_after_store(self) -> bool:
        """Close a stored POST's connection unanswered."""
        return self.fire("drop_after_store", self._faults.drop_after_store)

    def gateway(self) -> int | None:
        """The status a gateway sends instead of this (handled) request's answer, or None."""
        faults = self._faults
        if not self.fire("gateway_error", faults.gateway_error):
            return None
        return faults.gateway_status or self._choice(GATEWAY_STATUSES)

    def echo(self) -> bool:
        """Echo the request headers in this error answer's body."""
        return self._faults.echo_headers and self.fire("echo_headers", 1.0)

    def shape(self, api: bool, has_body: bool) -> Shape:
        """How this answer is sent: its Date offset (every answer), and for API
        answers the dribbling, slowness and padding that strike it."""
        faults = self._faults
        offset = faults.date_offset
        if offset and api:
            with self._lock:
                self._counts["date_offset"] += 1
        if not api:
            return Shape(date_offset=offset)
        head = faults.dribble_head if faults.dribble_head and self.fire("dribble_head", 1.0) else 0.0
        oversize = faults.oversize if faults.oversize and self.fire("oversize", 1.0) else 0
        has_body = has_body or oversize > 0
        chunked = oversize > 0 and faults.oversize_chunked
        if has_body and faults.dribble_body and self.fire("dribble_body", 1.0):
            return Shape(offset, head, 1, faults.dribble_body, 0.0, oversize, chunked)
        slow = faults.slow_body if has_body and faults.slow_body and self.fire("slow_body", 1.0) else 0.0
        return Shape(offset, head, 0, 0.0, slow, oversize, chunked)
