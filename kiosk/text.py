"""Text that crosses a trust boundary: names typed by a sysadmin, bytes from a reader, words from a server.

Three rules, each in one place:

- :func:`clean_name` admits a username or label only when it is what it looks
  like: NFC-normalised, no control, format or other invisible characters, no
  spaces at the ends, at most a set length. The error says which character, and where.
- :func:`escape` makes anything printable on one terminal line: control and
  invisible characters become ``\\x1b``/``\\u200b`` escapes, and long text is cut
  with an ellipsis and the original length. Every command's output goes through it.
- :func:`untrusted` prepares a server's message for a log, the store or output:
  control characters out, any occurrence of a secret masked, cut to 300 characters.

    >>> clean_name("anna")
    'anna'
    >>> escape("04A1\\x1b[2J", limit=8)
    '04A1\\\\x1b[2J'
    >>> untrusted("echo: X-TimeTrack-Api-Secret: s3cret", secrets=["s3cret"])
    'echo: X-TimeTrack-Api-Secret: ********'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from kiosk.exc import KioskError

NAME_MAX = 100
SERVER_MAX = 300
MASK = "********"
# Characters that draw nothing but are not in the format/control categories.
_INVISIBLE = {0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F, 0x180E}


class InvalidText(KioskError, ValueError):
    """A name or label that is not acceptable; the message says which character and where."""


def _invisible(ch: str) -> bool:
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return True
    if cat == "Zs" and ch != " ":
        return True  # no-break, em, ideographic spaces: look like a plain space, are not
    return ord(ch) in _INVISIBLE


def describe_char(ch: str) -> str:
    """``U+200B ZERO WIDTH SPACE``: a character named so that a person can find it."""
    fallback = "control character" if unicodedata.category(ch) == "Cc" else "unnamed character"
    return f"U+{ord(ch):04X} {unicodedata.name(ch, fallback)}"


def clean_name(text: str, what: str = "username", *, max_length: int = NAME_MAX, empty_ok: bool = False) -> str:
    """``text`` NFC-normalised, or :class:`InvalidText` saying what is wrong with it."""
    if not isinstance(text, str):
        raise InvalidText(f"{what} must be text")
    if len(text) > 4 * max_length:  # do not even normalise something this long
        raise InvalidText(f"{what} is {len(text)} characters long; at most {max_length} are allowed")
    value = unicodedata.normalize("NFC", text)
    if not value:
        if empty_ok:
            return value
        raise InvalidText(f"{what} is empty")
    for index, ch in enumerate(value, 1):
        if _invisible(ch):
            kind = "a control character" if unicodedata.category(ch) == "Cc" else "invisible"
            raise InvalidText(f"{what} '{escape(value, limit=40)}': character {index} is {kind} "
                              f"({describe_char(ch)}); type the name without it")
    if value != value.strip():
        end = "leading" if value[0].isspace() else "trailing"
        raise InvalidText(f"{what} '{escape(value, limit=40)}' has {end} spaces")
    if len(value) > max_length:
        raise InvalidText(f"{what} is {len(value)} characters long; at most {max_length} are allowed")
    return value


def escape(text: object, *, limit: int | None = None) -> str:
    """``text`` safe to print on one line: invisible characters escaped, cut to ``limit`` characters."""
    value = str(text)
    cut = limit is not None and len(value) > limit
    if cut:
        value = value[:limit]
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() and not _invisible(ch):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    result = "".join(out)
    if cut:
        result += f"… ({len(str(text))} characters)"
    return result


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each (non-empty) secret replaced by ``********``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def untrusted(text: object, *, secrets: Iterable[str] = (), limit: int = SERVER_MAX) -> str:
    """A server's words made safe to log, store and show: one line, secrets masked, cut to ``limit``."""
    value = str(text)[: limit * 8]  # masking needs the secret whole; nothing beyond this is ever shown
    value = mask(value, secrets)
    value = "".join(ch if ch.isprintable() and not _invisible(ch) else " " for ch in value)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"
