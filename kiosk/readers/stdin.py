"""The stdin reader: one badge id per line, for simulation, demos and scripted tests.

End of input ends ``taps()``, which stops the daemon cleanly. Reads go through
``select`` with a short timeout so a stop request is noticed while waiting.
Blank lines and lines starting with ``#`` are skipped.

Input is bounded, whatever arrives:

- each byte is looked at once: a chunk is searched for newlines from where the
  last search stopped, and only the current line (at most ``max_line`` bytes)
  is kept, so 16 MB on one line cost what reading 16 MB costs;
- a line longer than ``max_line`` (:data:`MAX_LINE`, 256 bytes) is discarded as
  it streams in, keeping only its first bytes to show, and is handed over as
  exactly one :class:`~kiosk.readers.Invalid` once its newline (or the end of
  input) comes; the lines after it are read as usual;
- a line that is not UTF-8 is one ``Invalid`` too (never an exception).

The keyboard reader treats an over-long id the same way (one ``Invalid``).
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from kiosk.readers import Invalid, Reader
from kiosk.text import escape

MAX_LINE = 256  # bytes; a badge id is at most 64 characters (kiosk.badges.MAX_INPUT)
SHOW = 24  # characters of a refused line shown in the INVALID line and the log
CHUNK = 65536
_SPACE = b" \t\r\n\v\f"


@dataclass
class _Overlong:
    """A line being discarded: its first bytes and its length so far."""

    head: bytes
    size: int


class StdinReader(Reader):
    """Badge ids from ``stream`` (default ``sys.stdin``), one per line, as text for the daemon to parse.

    ``prompt`` is written to stderr before each line (the demo's ``badge>``);
    ``tick`` is how often a stop request is checked while waiting for input;
    lines over ``max_line`` bytes become one :class:`~kiosk.readers.Invalid`.

        >>> import io, threading
        >>> reader = StdinReader(io.StringIO("04A1B2C3\\n# a comment\\n\\n" + "1" * 300 + "\\n"))
        >>> for tap in reader.taps(threading.Event()):
        ...     print(tap if isinstance(tap, str) else tap.reason)
        04A1B2C3
        '111111111111111111111111…' (300 bytes): a line over 256 bytes is not a badge id; discarded
    """

    name = "stdin"

    def __init__(self, stream: IO | None = None, *, prompt: str = "", tick: float = 0.2,
                 max_line: int = MAX_LINE):
        super().__init__()
        self.stream = stream if stream is not None else sys.stdin
        self.prompt = prompt
        self.tick = tick
        self.max_line = max_line

    def taps(self, stop: threading.Event) -> Iterator[str | Invalid]:
        """Each line's text (stripped), or an :class:`~kiosk.readers.Invalid`, until input ends or ``stop``."""
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        lines = self._fd_lines(fd, stop) if fd is not None else self._stream_lines(stop)
        self._show_prompt()
        for line in lines:
            item = self._item(line)
            if item is not None:
                yield item
            if stop.is_set():
                return
            self._show_prompt()

    # ------------------------------------------------------------ internals

    def _item(self, line: bytes | _Overlong) -> str | Invalid | None:
        if isinstance(line, _Overlong):
            shown = escape(line.head.decode("utf-8", "replace")[:SHOW])
            return Invalid(shown, f"'{shown}…' ({line.size} bytes): a line over {self.max_line} bytes "
                                  "is not a badge id; discarded")
        line = line.strip(_SPACE)
        if not line or line.startswith(b"#"):
            return None
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = escape(line.decode("utf-8", "replace"), limit=SHOW)
            return Invalid(shown, f"'{shown}': not UTF-8 text (byte 0x{line[exc.start]:02X} at {exc.start + 1})")

    def _show_prompt(self) -> None:
        if self.prompt:
            sys.stderr.write(self.prompt)
            sys.stderr.flush()

    def _split(self, chunks: Iterator[bytes]) -> Iterator[bytes | _Overlong]:
        """Lines of at most ``max_line`` bytes, or :class:`_Overlong` for a longer one; linear in the input."""
        line = bytearray()
        overlong: _Overlong | None = None
        for chunk in chunks:
            view, start = memoryview(chunk), 0
            while start <= len(chunk):
                end = chunk.find(b"\n", start)
                piece = view[start: end if end >= 0 else len(chunk)]
                if overlong is not None:
                    overlong.size += len(piece)
                elif len(line) + len(piece) > self.max_line:
                    overlong = _Overlong(bytes(line[:SHOW * 4]) + bytes(piece[:SHOW * 4]), len(line) + len(piece))
                    line.clear()
                else:
                    line += piece
                if end < 0:
                    break
                yield overlong if overlong is not None else bytes(line)
                line.clear()
                overlong = None
                start = end + 1
        if overlong is not None or line:
            yield overlong if overlong is not None else bytes(line)

    def _fd_lines(self, fd: int, stop: threading.Event) -> Iterator[bytes | _Overlong]:
        """Lines from a file descriptor, checking ``stop`` between reads."""

        def chunks() -> Iterator[bytes]:
            while not stop.is_set():
                ready, _, _ = select.select([fd], [], [], self.tick)
                if not ready:
                    continue
                chunk = os.read(fd, CHUNK)
                if not chunk:
                    return
                yield chunk

        yield from self._split(chunks())

    def _stream_lines(self, stop: threading.Event) -> Iterator[bytes | _Overlong]:
        """Lines from a stream without a file descriptor (``io.StringIO``, ``io.BytesIO``), read in bounded pieces."""
        stream = getattr(self.stream, "buffer", self.stream)

        def chunks() -> Iterator[bytes]:
            while not stop.is_set():
                piece = stream.readline(CHUNK)
                if not piece:
                    return
                yield piece.encode("utf-8", "surrogateescape") if isinstance(piece, str) else piece

        yield from self._split(chunks())
