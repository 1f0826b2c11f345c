"""Badge mapping files: the CSV that ``kiosk badge import`` reads and ``kiosk badge export`` writes.

Format: UTF-8 (a byte-order mark is allowed), a header line, then one badge per
line. Columns ``uid`` and ``username`` are required, ``label`` and ``enabled``
optional, in any order::

    uid,username,label,enabled
    04A1B2C3,anna,blue lanyard,true
    3283263748,ben,,false

Every row is checked before anything changes (:func:`read_csv` collects every
problem with its line number); the uid takes any spelling ``kiosk badge add``
takes, the username and label the same cleaning (:func:`kiosk.text.clean_name`).
``enabled`` is ``true``/``false`` (also ``yes``/``no``, ``1``/``0``; empty means true).

    >>> rows = read_csv(io.StringIO("uid,username\\n04:a1:b2:c3,anna\\n"))   # doctest: +SKIP
    >>> rows[0]
    BadgeRow(line=2, uid='04A1B2C3', username='anna', label='', enabled=True)
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from kiosk import badges, text
from kiosk.exc import BadgeIdError, InputRefused
from kiosk.model import Badge

COLUMNS = ("uid", "username", "label", "enabled")
REQUIRED = ("uid", "username")
TRUE = {"true", "yes", "1", "y", ""}
FALSE = {"false", "no", "0", "n"}
MAX_ERRORS = 1000  # a file that is wrong everywhere (the wrong file) is not worth listing whole
FIELD_MAX = 4096  # characters of one field; longer is refused without further checks


@dataclass(frozen=True)
class BadgeRow:
    """One checked line of a badge file."""

    line: int
    uid: str
    username: str
    label: str = ""
    enabled: bool = True


def _bool(value: str) -> bool:
    low = value.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise ValueError(f"enabled must be true or false, not '{text.escape(value, limit=20)}'")


def read_csv(stream: IO[str] | IO[bytes], byte_order: str = "little", *,
             progress: Callable[[int], None] | None = None) -> list[BadgeRow]:
    """Every row of the badge file ``stream``, checked; :class:`~kiosk.exc.InputRefused` listing
    each bad line (bad uid, bad name, duplicate uid, wrong number of fields) if any is wrong.

    ``progress(n)`` is called with the number of lines read so far, now and then.
    """
    errors: list[tuple[int, str]] = []
    reader = csv.reader(_text_lines(stream, errors), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputRefused("the badge file is not valid CSV", [(1, f"not valid CSV: {exc}")]) from None
    if header is None:
        raise InputRefused("the badge file is empty", [(1, "empty file: expected a header line uid,username[,label,enabled]")])
    names = [h.strip().lstrip("\ufeff").lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or doubled:
        why = "; ".join(filter(None, [
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(text.escape(u, limit=30) for u in unknown)}" if unknown else "",
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}" if missing else "",
            f"column{'s' if len(doubled) > 1 else ''} named twice: {', '.join(doubled)}" if doubled else "",
        ]))
        raise InputRefused(f"line 1: bad header: {why}",
                           [(1, f"bad header ({why}); expected uid,username[,label,enabled]")])
    index = {n: i for i, n in enumerate(names)}
    rows: list[BadgeRow] = []
    seen: dict[str, int] = {}
    line = 1
    try:
        for record in reader:
            if len(errors) >= MAX_ERRORS:
                break
            line = reader.line_num
            if progress is not None and line % 250 == 0:
                progress(line)
            if not record or all(not f.strip() for f in record):
                continue  # blank line
            if len(record) != len(names):
                errors.append((line, f"{len(record)} fields, the header has {len(names)}"))
                continue
            try:
                row = _row(line, record, index, byte_order)
            except (BadgeIdError, text.InvalidText, ValueError) as exc:
                errors.append((line, str(exc)))
                continue
            if row.uid in seen:
                errors.append((line, f"badge {row.uid} is already on line {seen[row.uid]}"))
                continue
            seen[row.uid] = line
            rows.append(row)
    except csv.Error as exc:
        errors.append((reader.line_num or line, f"not valid CSV: {exc}"))
    if progress is not None:
        progress(line)
    if errors:
        errors.sort(key=lambda e: e[0])
        raise InputRefused(f"{len(errors)}{'+' if len(errors) >= MAX_ERRORS else ''} bad line"
                           f"{'s' if len(errors) != 1 else ''} in the badge file; nothing was changed", errors)
    return rows


def _text_lines(stream: Iterable[str] | Iterable[bytes], errors: list[tuple[int, str]]) -> Iterator[str]:
    """Lines as text; a binary stream is decoded line by line, so that bytes that are not UTF-8 are
    reported with their line number (and replaced, so the other lines are still checked)."""
    for number, line in enumerate(stream, 1):
        if isinstance(line, str):
            yield line.lstrip("\ufeff") if number == 1 else line
            continue
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append((number, f"not UTF-8 text: byte 0x{line[exc.start]:02X} at column {exc.start + 1} "
                                   "(save the file as UTF-8)"))
            yield line.decode("utf-8", "replace")


def _row(line: int, record: list[str], index: dict[str, int], byte_order: str) -> BadgeRow:
    def field(name: str) -> str:
        value = record[index[name]] if name in index else ""
        if len(value) > FIELD_MAX:
            raise ValueError(f"{name} is {len(value)} characters long")
        return value

    raw_uid = field("uid")
    try:
        uid = badges.parse(raw_uid, byte_order)
    except BadgeIdError as exc:
        raise BadgeIdError(f"uid: {text.escape(str(exc), limit=200)}") from None
    username = text.clean_name(field("username"), "username")
    label = text.clean_name(field("label"), "label", empty_ok=True)
    return BadgeRow(line, uid, username, label, _bool(field("enabled")))


def write_csv(rows: Iterable[Badge], stream: IO[str]) -> int:
    """Write badges in the import format (a file ``kiosk badge import`` reads back as it was)."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for b in rows:
        writer.writerow([b.uid, b.username, b.label, "true" if b.enabled else "false"])
        n += 1
    return n


def write_json(rows: Iterable[Badge], stream: IO[str]) -> int:
    """Write badges as a JSON array of records, one per line, without holding them all in memory."""
    n = 0
    stream.write("[")
    for b in rows:
        stream.write(("\n  " if n == 0 else ",\n  ") + json.dumps(b.to_record(), sort_keys=True))
        n += 1
    stream.write("\n]\n" if n else "]\n")
    return n
