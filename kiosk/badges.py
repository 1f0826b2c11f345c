"""Badge ids: every way a UID is written, reduced to one canonical form.

Canonical: the UID bytes (4, 7 or 10 of them) in uppercase hex without
separators, e.g. ``04A1B2C3`` or ``04A1B2C3D4E580``. Leading zero bytes are
part of the UID and survive. Whatever the kiosk prints is accepted back as
input, unchanged: ``parse(canonical) == canonical`` for every UID.

Accepted input (:func:`parse`), at most :data:`MAX_INPUT` characters, ASCII only:

- hex, any case, optionally ``0x``-prefixed, bytes optionally separated by
  ``:``, ``-`` or spaces (``04:a1:b2:c3``, ``0x04A1B2C3``);
- a run of ASCII digits, read by its length:

  ===========================  ==============================================
  8, 14 or 20 digits           hex: the canonical spelling of a UID that
                               happens to contain no letter (``12345678``)
  10 digits, below 2**32       the decimal a USB keyboard-wedge reader types:
                               the 4 UID bytes as one 32-bit number, first
                               UID byte least significant ("little", the
                               default: ``04A1B2C3`` types ``3283263748``) or
                               most significant ("big": ``0077705923``);
                               ``[badges] decimal_byte_order``
  any other length up to 13    the number mfrc522's SimpleMFRC522 prints: the
                               4 UID bytes and their BCC checksum byte as one
                               40-bit number; the checksum is verified
  anything else                refused
  ===========================  ==============================================

Why the decimal forms cannot be mistaken for hex: a wedge number is always
exactly 10 digits (zero-padded; the largest, 2**32 - 1, has 10). A
SimpleMFRC522 number is UID * 256 + BCC < 2**40, so at most 13 digits; when the
first UID byte is not 0x00 it is at least 2**32, so 10 to 13 digits and never
below 2**32: neither 8/14/20 digits nor a wedge number. Only for UIDs starting
with 0x00 is it shorter, and then 8 digits read as hex and 10 as a wedge
number: write those UIDs in hex, or their SimpleMFRC522 number zero-padded to
13 digits (the README has the figures).

Nothing here converts long input: anything over :data:`MAX_INPUT` characters is
refused before any parsing, and error messages echo input cut short and
escaped (:func:`kiosk.text.escape`).

    >>> parse("04:a1:b2:c3")
    '04A1B2C3'
    >>> parse("12345678")              # all digits, 8 of them: hex, as the kiosk prints it
    '12345678'
    >>> parse("3283263748")            # a keyboard-wedge reader's decimal
    '04A1B2C3'
    >>> from_bytes(b"\\x04\\xa1\\xb2\\xc3")  # what the RC522 reader hands over
    '04A1B2C3'
"""

from __future__ import annotations

import re

from kiosk.exc import BadgeIdError
from kiosk.text import describe_char, escape

UID_LENGTHS = (4, 7, 10)
HEX_DIGITS = tuple(2 * n for n in UID_LENGTHS)  # 8, 14, 20: an all-digit string of these lengths is hex
CASCADE_TAG = 0x88
MAX_INPUT = 64  # characters; longer input is refused before any conversion
SHOWN = 32  # characters of refused input echoed in an error message
WEDGE_DIGITS = 10
SIMPLE_MAX_DIGITS = 13  # 2**40 - 1 has 13 digits
_SPACE = " \t\r\n\v\f"  # ASCII whitespace only: U+3000 and friends are refused, not stripped
_SEPARATORS = re.compile(r"[:\- \t]")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_DIGITS = re.compile(r"[0-9]+")  # not \d, not str.isdigit(): those admit ², ① and fullwidth ３


def _shown(raw: str) -> str:
    return f"'{escape(raw, limit=SHOWN)}'"


def parse(text: str, decimal_byte_order: str = "little") -> str:
    """Return the canonical id for ``text``, or raise :class:`~kiosk.exc.BadgeIdError` saying why.

    Never raises anything else for any ``str`` (a wrong ``decimal_byte_order``
    is a programming error: ``ValueError``).

        >>> parse("0x04a1b2c3d4e580")
        '04A1B2C3D4E580'
        >>> parse("0077705923", "big")
        '04A1B2C3'
    """
    if decimal_byte_order not in ("little", "big"):
        raise ValueError(f"decimal_byte_order must be 'little' or 'big', not {decimal_byte_order!r}")
    if not isinstance(text, str):
        raise TypeError(f"a badge id is text, not {type(text).__name__}")
    if len(text) > MAX_INPUT:
        raise BadgeIdError(f"{_shown(text)}: {len(text)} characters; a badge id has at most {MAX_INPUT}")
    raw = text.strip(_SPACE)
    if not raw:
        raise BadgeIdError("empty badge id")
    for index, ch in enumerate(raw, 1):
        if not ch.isascii():
            raise BadgeIdError(f"{_shown(raw)}: character {index} is {describe_char(ch)}; badge ids are written "
                               "with the ASCII digits 0-9 and letters A-F only")
    has_prefix = raw[:2] in ("0x", "0X")
    body = raw[2:] if has_prefix else raw
    separated = bool(_SEPARATORS.search(body))
    if not has_prefix and not separated and _DIGITS.fullmatch(body):
        return _from_digits(body, decimal_byte_order)
    if separated:
        groups = [g for g in _SEPARATORS.split(body) if g]
        bad = [g for g in groups if len(g) != 2 or not _HEX.fullmatch(g)]
        if bad:
            raise BadgeIdError(f"{_shown(raw)}: separated hex must be two digits per byte "
                               f"(bad group {_shown(bad[0])})")
        body = "".join(groups)
    if not _HEX.fullmatch(body):
        raise BadgeIdError(f"{_shown(raw)}: not hex or decimal")
    if len(body) % 2:
        raise BadgeIdError(f"{_shown(raw)}: odd number of hex digits ({len(body)})")
    return _canonical(bytes.fromhex(body), raw)


def from_bytes(data: bytes) -> str:
    """The canonical id of UID bytes read by a hardware reader (no guessing: bytes are bytes).

        >>> from_bytes(bytes.fromhex("12345678"))
        '12345678'
    """
    data = bytes(data)
    return _canonical(data, data[:12].hex().upper())  # a reader hands over at most 10 bytes; show no more


def _from_digits(digits: str, order: str) -> str:
    """An all-ASCII-digit string (at most MAX_INPUT long), read by its length; see the module docstring."""
    count = len(digits)
    if count in HEX_DIGITS:
        return _canonical(bytes.fromhex(digits), digits)
    if count > SIMPLE_MAX_DIGITS:
        raise BadgeIdError(
            f"{_shown(digits)}: {count} digits; a hex UID has 8, 14 or 20 digits and a reader's decimal "
            f"number at most {SIMPLE_MAX_DIGITS}")
    value = int(digits)  # at most 13 digits here
    if count == WEDGE_DIGITS and value < 2**32:
        data = value.to_bytes(4, "big")
        return _canonical(data[::-1] if order == "little" else data, digits)
    # SimpleMFRC522: 4 UID bytes + BCC, as one big-endian number.
    if value >= 2**40:
        raise BadgeIdError(f"{_shown(digits)}: decimal too large for a 4-byte UID with checksum")
    data = value.to_bytes(5, "big")
    uid, bcc = data[:4], data[4]
    if uid[0] ^ uid[1] ^ uid[2] ^ uid[3] != bcc:
        raise BadgeIdError(
            f"{_shown(digits)}: not a hex UID (8, 14 or 20 digits), not a 10-digit reader number, and its "
            "last byte is not the checksum of a SimpleMFRC522 number"
        )
    return _canonical(uid, digits)


def _canonical(data: bytes, raw: str) -> str:
    if len(data) not in UID_LENGTHS:
        raise BadgeIdError(f"{_shown(raw)}: a UID has 4, 7 or 10 bytes, not {len(data)}")
    if data[0] == CASCADE_TAG:
        raise BadgeIdError(
            f"{_shown(raw)}: starts with the cascade tag 0x88, so it is a cut-short 7- or 10-byte UID; "
            "read the full UID (the kiosk's reader does)"
        )
    return data.hex().upper()


def _canonical_bytes(uid: str) -> bytes:
    """Bytes of an id already in canonical form."""
    if not isinstance(uid, str) or len(uid) not in HEX_DIGITS or not _HEX.fullmatch(uid):
        raise BadgeIdError(f"{_shown(str(uid))}: not a canonical badge id")
    data = bytes.fromhex(uid)
    _canonical(data, uid)
    return data


def to_decimal(uid: str, order: str = "little") -> str:
    """The 10-digit number a USB reader would type for the canonical 4-byte ``uid``.

        >>> to_decimal("04A1B2C3")
        '3283263748'
    """
    data = _canonical_bytes(uid)
    if len(data) != 4:
        raise BadgeIdError(f"{uid}: only 4-byte UIDs have a 10-digit reader number")
    return f"{int.from_bytes(data[::-1] if order == 'little' else data, 'big'):010d}"


def to_simple_mfrc522(uid: str) -> int:
    """The number SimpleMFRC522.read_id() returns for the canonical 4-byte ``uid`` (UID + BCC).

        >>> to_simple_mfrc522("04A1B2C3")
        19892716500
    """
    data = _canonical_bytes(uid)
    if len(data) != 4:
        raise BadgeIdError(f"{uid}: SimpleMFRC522 only reads 4 bytes")
    return int.from_bytes(data + bytes([data[0] ^ data[1] ^ data[2] ^ data[3]]), "big")
