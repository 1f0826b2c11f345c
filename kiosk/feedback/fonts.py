"""The display's fonts: DejaVu Sans, Sans Bold and Sans Mono, found where distributions put them.

Loaded with Pillow's BASIC layout engine, so that the pixels are the same with or
without libraqm. :meth:`Fonts.can_draw` tells which characters a face really has:
Pillow draws an empty box (the font's ``.notdef`` glyph) for the others, and
BASIC layout cannot order right-to-left text, so both count as not drawable.
Without DejaVu (``fonts-dejavu-core``), Pillow's own default font stands in.
"""

from __future__ import annotations

import functools
import os
import unicodedata

from PIL import ImageFont

REGULAR, BOLD, MONO = "regular", "bold", "mono"
FONT_FILES = {REGULAR: "DejaVuSans.ttf", BOLD: "DejaVuSans-Bold.ttf", MONO: "DejaVuSansMono.ttf"}
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Raspberry Pi OS, Ubuntu (fonts-dejavu-core)
    "/usr/share/fonts/dejavu-sans-fonts",  # Fedora
    "/usr/share/fonts/dejavu-sans-mono-fonts",
    "/usr/share/fonts/TTF",  # Arch
    "/usr/share/fonts/dejavu",  # Alpine
)
_RTL = {"R", "AL", "RLE", "RLO", "RLI"}


def find_font(face: str, override: str = "") -> str | None:
    """The path of ``face`` (regular, bold, mono): ``override`` if it exists, else DejaVu's usual places."""
    if override:
        return override if os.path.isfile(override) else None
    for directory in FONT_DIRS:
        path = os.path.join(directory, FONT_FILES[face])
        if os.path.isfile(path):
            return path
    return None


class Fonts:
    """The three faces at any pixel size, cached, and which characters they can draw.

    ``paths`` maps a face to a TrueType file (None or missing: :func:`find_font`);
    a face with no file falls back to Pillow's default font.
    """

    def __init__(self, paths: dict[str, str | None] | None = None):
        paths = paths or {}
        self.paths = {face: paths.get(face) or find_font(face) for face in FONT_FILES}
        self._get = functools.lru_cache(maxsize=128)(self._load)
        self._drawable: dict[tuple[str, str], bool] = {}
        self._notdef: dict[str, bytes] = {}

    @property
    def missing(self) -> list[str]:
        """The faces for which no font file was found (Pillow's default font stands in)."""
        return [face for face, path in self.paths.items() if not path]

    def get(self, face: str, size: int):
        return self._get(face, max(1, int(size)))

    def _load(self, face: str, size: int):
        path = self.paths.get(face)
        if path:
            try:
                return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
            except OSError:
                pass  # unreadable or not a font: fall back below
        return ImageFont.load_default(size)

    def can_draw(self, ch: str, face: str) -> bool:
        """True if ``face`` has a glyph for ``ch`` that BASIC layout places correctly."""
        key = (face, ch)
        known = self._drawable.get(key)
        if known is None:
            known = self._drawable[key] = self._check(ch, face)
        return known

    def _check(self, ch: str, face: str) -> bool:
        if ch == " ":
            return True
        if unicodedata.category(ch)[0] in "CZ" or unicodedata.bidirectional(ch) in _RTL:
            return False  # invisible, odd spaces, or right-to-left (BASIC layout cannot order it)
        font = self.get(face, 16)
        try:
            if face not in self._notdef:
                self._notdef[face] = _mask_bytes(font, "\uffff")  # a noncharacter: every font's empty box
            return _mask_bytes(font, ch) != self._notdef[face]
        except Exception:
            return False

    def drawable(self, text: str, face: str) -> str:
        """``text`` with every character ``face`` cannot draw replaced by "?"."""
        return "".join(ch if self.can_draw(ch, face) else "?" for ch in text)


def _mask_bytes(font, text: str) -> bytes:
    mask = font.getmask(text, mode="1")
    return bytes(mask.size) + bytes(mask)


@functools.lru_cache(maxsize=1)
def default_fonts() -> Fonts:
    return Fonts()


def clusters(text: str) -> list[str]:
    """``text`` split into characters with their combining marks, the units a name may scroll by."""
    out: list[str] = []
    for ch in text:
        if out and unicodedata.combining(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out
