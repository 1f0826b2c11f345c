"""Badge ids: every way a UID is written, reduced to one canonical form.

Canonical: the UID bytes (4, 7 or 10 of them) in uppercase hex without
separators, e.g. ``04A1B2C3`` or ``04A1B2C3D4E580``. Leading zero bytes are
part of the UID and survive.

Accepted input:

- hex, any case, optionally ``0x``-prefixed, bytes optionally separated by
  ``:``, ``-`` or spaces (``04:a1:b2:c3``, ``0x04A1B2C3``);
- the 10-digit decimal that USB keyboard-wedge readers type: the 4 UID bytes as
  one 32-bit number. Most readers send the first UID byte as the least
  significant ("little", the default: UID ``04A1B2C3`` types ``3283263748``);
  others send it as the most significant ("big": ``0077705923``). Choose with
  ``[badges] decimal_byte_order``;
- any other run of digits: the number that mfrc522's SimpleMFRC522 prints, which
  is the 4 UID bytes followed by the BCC checksum byte (``n = n*256 + b`` over 5
  bytes). The checksum is verified and stripped.

An all-digit hex UID must be written with ``0x`` or separators; otherwise it is
read as decimal (and usually refused by the checksum).
"""

from __future__ import annotations

import re

from kiosk.exc import BadgeIdError

UID_LENGTHS = (4, 7, 10)
CASCADE_TAG = 0x88
_SEPARATORS = re.compile(r"[:\-\s]")
_HEX = re.compile(r"[0-9A-Fa-f]+")


def parse(text: str, decimal_byte_order: str = "little") -> str:
    """Return the canonical id for ``text`` or raise :class:`BadgeIdError`."""
    if decimal_byte_order not in ("little", "big"):
        raise ValueError(f"decimal_byte_order must be 'little' or 'big', not {decimal_byte_order!r}")
    raw = text.strip()
    if not raw:
        raise BadgeIdError("empty badge id")
    has_prefix = raw[:2].lower() == "0x"
    body = raw[2:] if has_prefix else raw
    separated = bool(_SEPARATORS.search(body))
    if not has_prefix and not separated and body.isdigit():
        return _from_decimal(body, decimal_byte_order)
    if separated:
        groups = [g for g in _SEPARATORS.split(body) if g]
        bad = [g for g in groups if len(g) != 2 or not _HEX.fullmatch(g)]
        if bad:
            raise BadgeIdError(f"{raw!r}: separated hex must be two digits per byte (bad group {bad[0]!r})")
        body = "".join(groups)
    if not _HEX.fullmatch(body):
        raise BadgeIdError(f"{raw!r}: not hex or decimal")
    if len(body) % 2:
        raise BadgeIdError(f"{raw!r}: odd number of hex digits ({len(body)})")
    return _canonical(bytes.fromhex(body), raw)


def from_bytes(data: bytes) -> str:
    """The canonical id of UID bytes read by a hardware reader (no guessing: bytes are bytes)."""
    return _canonical(bytes(data), bytes(data).hex().upper())


def _from_decimal(digits: str, order: str) -> str:
    value = int(digits)
    if len(digits) == 10 and value < 2**32:
        data = value.to_bytes(4, "big")
        return _canonical(data[::-1] if order == "little" else data, digits)
    # SimpleMFRC522: 4 UID bytes + BCC, as one big-endian number.
    if value >= 2**40:
        raise BadgeIdError(f"{digits!r}: decimal too large for a 4-byte UID with checksum")
    data = value.to_bytes(5, "big")
    uid, bcc = data[:4], data[4]
    if uid[0] ^ uid[1] ^ uid[2] ^ uid[3] != bcc:
        raise BadgeIdError(
            f"{digits!r}: not a 10-digit reader number, and its last byte is not the checksum of a "
            "SimpleMFRC522 id; for a hex UID made only of digits write 0x… or separate the bytes"
        )
    return _canonical(uid, digits)


def _canonical(data: bytes, raw: str) -> str:
    if len(data) not in UID_LENGTHS:
        raise BadgeIdError(f"{raw!r}: a UID has 4, 7 or 10 bytes, not {len(data)}")
    if data[0] == CASCADE_TAG:
        raise BadgeIdError(
            f"{raw!r}: starts with the cascade tag 0x88, so it is a cut-short 7- or 10-byte UID; "
            "read the full UID (the kiosk's reader does)"
        )
    return data.hex().upper()


def _canonical_bytes(uid: str) -> bytes:
    """Bytes of an id already in canonical form (all-digit hex stays hex here)."""
    try:
        data = bytes.fromhex(uid)
    except ValueError:
        raise BadgeIdError(f"{uid!r}: not a canonical badge id") from None
    _canonical(data, uid)
    return data


def to_decimal(uid: str, order: str = "little") -> str:
    """The 10-digit number a USB reader would type for the canonical 4-byte ``uid``."""
    data = _canonical_bytes(uid)
    if len(data) != 4:
        raise BadgeIdError(f"{uid}: only 4-byte UIDs have a 10-digit reader number")
    return f"{int.from_bytes(data[::-1] if order == 'little' else data, 'big'):010d}"


def to_simple_mfrc522(uid: str) -> int:
    """The number SimpleMFRC522.read_id() returns for the canonical 4-byte ``uid`` (UID + BCC)."""
    data = _canonical_bytes(uid)
    if len(data) != 4:
        raise BadgeIdError(f"{uid}: SimpleMFRC522 only reads 4 bytes")
    return int.from_bytes(data + bytes([data[0] ^ data[1] ^ data[2] ^ data[3]]), "big")
