"""What the door display shows: every screen drawn with Pillow at the device's resolution.

Pure and device-free (no luma, no thread, no clock reads), so that tests and
``kiosk demo --display-png`` render the very screens a kiosk shows::

    screen = screens.for_outcome(outcome)             # a Screen: what to say
    image = screens.Renderer((128, 64)).render(screen)  # a 1-bit PIL image: how it looks

The layout is drawn for 128x64 (the common SSD1306/SH1106 OLED); on larger
panels positions stretch with each axis and text grows by ``min(width / 128,
height / 64)``. Three rows: a
headline (``IN``, ``OUT``, ``TOO SOON``...; white on black for problems, with
the recorded time at the right on IN/OUT), the name or badge id in the largest
size that fits, and one small line (session length, "badge not registered"...).

Fonts: DejaVu Sans, Sans Bold and Sans Mono (Debian's ``fonts-dejavu-core``),
looked up at the usual paths of several distributions, else Pillow's own
default font. Text is laid out with Pillow's BASIC engine, so the pixels are
the same whether or not libraqm is installed (the reference images in
``tests/display/`` depend on it). A character the font cannot draw (Pillow
would draw an empty box) or that needs right-to-left layout (BASIC cannot order
it) becomes "?"; a name with nothing drawable left shows the badge id instead.

Names never get cut mid-letter: the largest size from 20 px down to 14 px (at
128x64) that fits is used; a longer name is shown through a window that slides
one character at a time (``Renderer.frames``), holding at its start and end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from PIL import Image, ImageDraw

from kiosk.feedback import Health, Status
from kiosk.feedback.fonts import BOLD, MONO, REGULAR, Fonts, clusters, default_fonts  # noqa: F401 (re-exported)
from kiosk.rules import TapKind, TapOutcome

BASE_SIZE = (128, 64)  # the layout's own size; larger panels scale it
SCROLL_SECONDS = 0.4  # one step of a name too long to fit
HOLD_STEPS = 3  # steps a scrolling name rests at its start and at its end
STATUS_SECONDS = 3.0  # each problem line on the idle screen


# ---------------------------------------------------------------- what to show


@dataclass(frozen=True)
class Screen:
    """One screen's content, independent of the panel's size.

    ``kind`` is the outcome's kind (``clock_in``...), ``idle`` or ``enrol``.
    Tap screens: ``headline`` (``inverted``: black on a white bar), ``corner``
    (top right), ``main`` drawn as ``main_style`` (``name``: bold, shrinks then
    scrolls; ``uid``: monospaced, may wrap; ``text``: regular) and ``footer``.
    The idle screen: ``headline`` (the kiosk's name), ``clock``, and ``footer``
    (the date) or, when something is wrong, the ``status`` lines (``alert``:
    a fault, drawn on a white bar).
    """

    kind: str
    headline: str = ""
    corner: str = ""
    main: str = ""
    main_style: str = "name"
    footer: str = ""
    inverted: bool = False
    fallback: str = ""  # shown as a uid when nothing of ``main`` can be drawn
    clock: str = ""
    status: tuple[str, ...] = ()
    alert: bool = False


def format_duration(seconds: float) -> str:
    """``8h29m``; under a minute ``42s`` (a demo's short sessions)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    return f"{minutes // 60}h{minutes % 60:02d}m"


def clock_text(when: datetime, hours: str = "24h") -> str:
    """``16:31`` (24h) or ``4:31 PM`` (12h), in ``when``'s own time zone."""
    if hours == "12h":
        return f"{when.hour % 12 or 12}:{when:%M} {'AM' if when.hour < 12 else 'PM'}"
    return f"{when:%H:%M}"


def for_outcome(outcome: TapOutcome, *, tz: tzinfo | None = None, hours: str = "24h") -> Screen | None:
    """The screen for a tap's outcome; None for a repeat tap (the current screen stays).

    Times are shown in ``tz`` (None: the system's local time zone), as the person reads a clock.
    """
    at = outcome.at.astimezone(tz)
    name = outcome.username or ""
    uid = outcome.uid or ""
    match outcome.kind:
        case TapKind.CLOCK_IN:
            footer = "earlier clock-in flagged" if outcome.stale is not None else "clocked in"
            return Screen(outcome.kind, "IN", clock_text(at, hours), name, footer=footer, fallback=uid)
        case TapKind.CLOCK_OUT:
            duration = outcome.duration
            footer = f"worked {format_duration(duration.total_seconds())}" if duration is not None else "clocked out"
            return Screen(outcome.kind, "OUT", clock_text(at, hours), name, footer=footer, fallback=uid)
        case TapKind.TOO_SOON:
            since = f"in since {clock_text(outcome.since.astimezone(tz), hours)}" if outcome.since else "just clocked in"
            return Screen(outcome.kind, "TOO SOON", main=name, footer=since, inverted=True, fallback=uid)
        case TapKind.UNKNOWN:
            return Screen(outcome.kind, "UNKNOWN", main=uid, main_style="uid", footer="badge not registered",
                          inverted=True)
        case TapKind.DISABLED:
            if name:
                return Screen(outcome.kind, "DISABLED", main=name, footer=f"badge {uid}", inverted=True, fallback=uid)
            return Screen(outcome.kind, "DISABLED", main=uid, main_style="uid", footer="badge disabled", inverted=True)
        case TapKind.INVALID:
            return Screen(outcome.kind, "TRY AGAIN", main="badge not read", main_style="text", inverted=True)
        case TapKind.REPEAT:
            return None
        case _:
            return Screen(TapKind.ERROR.value, "ERROR", main="not recorded", main_style="text",
                          footer="please tap again", inverted=True)


def enrolment(username: str) -> Screen:
    """The prompt while a sysadmin enrols a badge by tap for ``username``: tap the new badge now."""
    return Screen("enrol", "NEW BADGE", main=username, footer="tap it on the reader", inverted=True)


def status_lines(status: Status | None) -> tuple[tuple[str, ...], bool]:
    """The idle screen's status lines and whether they are a fault (``alert``); () when all is well."""
    if status is None:
        return (), False
    queued = f"{status.queued} queued" if status.queued > 0 else ""
    if status.health is Health.FAULT:
        lines = status.lines() or ("fault",)
        return lines + ((queued,) if queued else ()), True
    lines = status.lines()
    if status.health is Health.BACKLOG:
        return lines or (f"offline: {queued}" if queued else "offline: entries queued",), False
    return lines, bool(lines)


def idle(now: datetime, kiosk_name: str, status: Status | None = None, *, hours: str = "24h") -> Screen:
    """The screen between taps: the time, the kiosk's name, the date or what is wrong.

    ``now`` is already in the time zone to show.
    """
    lines, alert = status_lines(status)
    return Screen("idle", kiosk_name, clock=clock_text(now, hours), footer=f"{now:%a %d %b}", status=lines,
                  alert=alert)


# ---------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Fit:
    font: object
    windows: tuple[str, ...]  # one text per frame; a single entry when it fits


class Renderer:
    """Draws screens for a panel of ``size`` pixels (mode "1": white on black).

    ``inset``: the idle screen keeps this many pixels (at 128x64) free at each
    edge, so that shifting it by up to that much (burn-in care) never cuts it.
    """

    def __init__(self, size: tuple[int, int] = BASE_SIZE, fonts: Fonts | None = None, *, inset: int = 2):
        self.size = (int(size[0]), int(size[1]))
        self.fonts = fonts or default_fonts()
        # Positions stretch with each axis; text grows with the smaller one, so it always fits.
        self.sx, self.sy = self.size[0] / BASE_SIZE[0], self.size[1] / BASE_SIZE[1]
        self.scale = min(self.sx, self.sy)
        self.inset = inset
        self._fits: dict[tuple, _Fit] = {}

    # -- geometry: layout units (128x64) to pixels

    def _x(self, v: float) -> int:
        return round(v * self.sx)

    def _y(self, v: float) -> int:
        return round(v * self.sy)

    def _px(self, v: float) -> int:
        return max(1, round(v * self.scale))

    # -- fitting

    def fit(self, text: str, face: str, width: float, largest: float, smallest: float) -> _Fit:
        """The largest size from ``largest`` down to ``smallest`` (layout px) at which ``text`` fits in
        ``width`` (layout px); if none does, windows of whole characters at ``smallest``, one per frame."""
        key = (text, face, width, largest, smallest)
        cached = self._fits.get(key)
        if cached is not None:
            return cached
        room = width * self.sx
        font = None
        for size in range(self._px(largest), self._px(smallest) - 1, -1):
            font = self.fonts.get(face, size)
            if font.getlength(text) <= room:
                result = _Fit(font, (text,))
                break
        else:
            font = self.fonts.get(face, self._px(smallest))
            result = _Fit(font, self._windows(text, font, room))
        if len(self._fits) > 256:
            self._fits.clear()
        self._fits[key] = result
        return result

    @staticmethod
    def _windows(text: str, font, room: float) -> tuple[str, ...]:
        units = clusters(text)
        windows: list[str] = []
        for start in range(len(units)):
            if start and units[start] == " ":
                continue  # a window never starts with a space
            end = start + 1
            while end < len(units) and font.getlength("".join(units[start:end + 1])) <= room:
                end += 1
            windows.append("".join(units[start:end]).rstrip())
            if end >= len(units):
                break
        if len(windows) <= 1:
            return tuple(windows) or ("",)
        return (windows[0],) * HOLD_STEPS + tuple(windows[1:-1]) + (windows[-1],) * HOLD_STEPS

    def _main_text(self, screen: Screen) -> tuple[str, str]:
        """What the main row shows and in which face, after replacing what the font cannot draw."""
        if screen.main_style == "uid":
            return self.fonts.drawable(screen.main, MONO), MONO
        face = BOLD if screen.main_style == "name" else REGULAR
        text = self.fonts.drawable(screen.main, face)
        if screen.fallback and not any(ch not in "? " for ch in text):
            return self.fonts.drawable(screen.fallback, MONO), MONO  # nothing drawable: the badge id
        return text, face

    def _main_fit(self, screen: Screen) -> _Fit:
        text, face = self._main_text(screen)
        if face == MONO:
            return self.fit(text, MONO, 124, 15, 9)
        return self.fit(text, face, 124, 20, 14)

    # -- frames

    def frames(self, screen: Screen) -> int:
        """How many frames ``screen`` has: scroll steps of a long name, or status lines in turn."""
        if screen.kind == "idle":
            return max(1, len(screen.status))
        return len(self._main_fit(screen).windows)

    @staticmethod
    def frame_seconds(screen: Screen) -> float:
        return STATUS_SECONDS if screen.kind == "idle" else SCROLL_SECONDS

    # -- rendering

    def render(self, screen: Screen, frame: int = 0, offset: tuple[int, int] = (0, 0)) -> Image.Image:
        """``screen`` as a mode "1" image of the panel's size; ``offset`` shifts an idle screen (pixels)."""
        image = Image.new("1", self.size, 0)
        draw = ImageDraw.Draw(image)
        if screen.kind == "idle":
            self._idle(draw, screen, frame, offset)
        else:
            self._tap(draw, screen, frame)
        return image

    def _text(self, draw, xy: tuple[float, float], text: str, font, *, anchor: str, fill: int = 1) -> None:
        draw.text(xy, text, font=font, fill=fill, anchor=anchor)

    def _baseline(self, font, top: float, bottom: float) -> int:
        """The baseline that centres capitals in the rows ``top``..``bottom`` (pixels), descenders inside."""
        cap = _cap_height(font)
        depth = _depth(font)
        room = bottom - top - depth
        return round(top + (room + cap) / 2)

    def _tap(self, draw: ImageDraw.ImageDraw, screen: Screen, frame: int) -> None:
        left, right = self._x(2), self._x(126)
        # Headline row: 0..22
        top, bottom = self._y(0), self._y(22)
        corner_font = self.fonts.get(BOLD, self._px(16))
        corner = self.fonts.drawable(screen.corner, BOLD)
        corner_width = corner_font.getlength(corner) + self._px(6) if corner else 0
        head = self.fit(self.fonts.drawable(screen.headline, BOLD), BOLD, 124 - corner_width / self.sx, 20, 10)
        fill = 1
        if screen.inverted:
            draw.rectangle((0, top, self.size[0] - 1, bottom - 1), fill=1)
            fill = 0
        baseline = self._baseline(head.font, top, bottom)
        headline = head.windows[0] if len(head.windows) == 1 else _ellipsis(head.windows[0], head.font, right - left - corner_width)
        self._text(draw, (left, baseline), headline, head.font, anchor="ls", fill=fill)
        if corner:
            self._text(draw, (right, baseline), corner, corner_font, anchor="rs", fill=fill)
        # Main row: 24..48
        main = self._main_fit(screen)
        text = main.windows[frame % len(main.windows)]
        top, bottom = self._y(24), self._y(48)
        if len(main.windows) == 1:
            self._text(draw, (self.size[0] / 2, self._baseline(main.font, top, bottom)), text, main.font,
                       anchor="ms")
        else:  # a sliding window: from the left edge, so that the steps read as moving text
            self._text(draw, (left, self._baseline(main.font, top, bottom)), text, main.font, anchor="ls")
        # Footer row: 49..64
        if screen.footer:
            foot = self.fit(self.fonts.drawable(screen.footer, REGULAR), REGULAR, 124, 12, 9)
            self._text(draw, (self.size[0] / 2, self._baseline(foot.font, self._y(49), self._y(64))),
                       foot.windows[0], foot.font, anchor="ms")

    def _idle(self, draw: ImageDraw.ImageDraw, screen: Screen, frame: int, offset: tuple[int, int]) -> None:
        inset = self.inset
        dx, dy = offset
        centre = self.size[0] / 2 + dx
        width = 128 - 2 * inset - 2
        name = self.fit(self.fonts.drawable(screen.headline, REGULAR), REGULAR, width, 12, 9)
        name_text = _ellipsis(name.windows[0], name.font, width * self.sx) if len(name.windows) > 1 else name.windows[0]
        self._text(draw, (centre, self._baseline(name.font, self._y(inset), self._y(15)) + dy), name_text,
                   name.font, anchor="ms")
        clock = self.fit(screen.clock, BOLD, width, 32, 16)
        self._text(draw, (centre, self._baseline(clock.font, self._y(15), self._y(48)) + dy), clock.windows[0],
                   clock.font, anchor="ms")
        top, bottom = self._y(49), self._y(64 - inset)
        if screen.status:
            line = self.fonts.drawable(screen.status[frame % len(screen.status)], REGULAR)
            fit = self.fit(line, REGULAR, width - 4, 12, 9)
            text = _ellipsis(fit.windows[0], fit.font, (width - 4) * self.sx) if len(fit.windows) > 1 \
                else fit.windows[0]
            fill = 1
            if screen.alert:
                draw.rectangle((self._x(inset) + dx, top + dy, self._x(128 - inset) - 1 + dx, bottom - 1 + dy), fill=1)
                fill = 0
            self._text(draw, (centre, self._baseline(fit.font, top, bottom) + dy), text, fit.font, anchor="ms",
                       fill=fill)
        elif screen.footer:
            fit = self.fit(screen.footer, REGULAR, width, 12, 9)
            self._text(draw, (centre, self._baseline(fit.font, top, bottom) + dy), fit.windows[0], fit.font,
                       anchor="ms")


def _cap_height(font) -> int:
    box = font.getbbox("H", anchor="ls")
    return -box[1]


def _depth(font) -> int:
    box = font.getbbox("gjpqy", anchor="ls")
    return max(0, box[3])


def _ellipsis(window: str, font, room: float) -> str:
    """A fixed line (not scrolled) that does not fit: whole characters and "…" (never cut mid-letter)."""
    units = clusters(window)
    while units and font.getlength("".join(units) + "…") > room:
        units.pop()
    return "".join(units).rstrip() + "…"


def render(screen: Screen, size: tuple[int, int] = BASE_SIZE, frame: int = 0,
           offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """Shortcut: ``Renderer(size).render(screen, frame, offset)``."""
    return Renderer(size).render(screen, frame, offset)
