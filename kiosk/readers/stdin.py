"""The stdin reader: one badge id per line, for simulation, demos and scripted tests.

End of input ends ``taps()``, which stops the daemon cleanly. Reads go through
``select`` with a short timeout so a stop request is noticed while waiting.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Iterator
from typing import IO

from kiosk.readers import Reader


class StdinReader(Reader):
    name = "stdin"

    def __init__(self, stream: IO[str] | None = None, *, prompt: str = "", tick: float = 0.2):
        super().__init__()
        self.stream = stream if stream is not None else sys.stdin
        self.prompt = prompt
        self.tick = tick

    def taps(self, stop: threading.Event) -> Iterator[str]:
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        lines = self._fd_lines(fd, stop) if fd is not None else iter(self.stream)
        self._show_prompt()
        for line in lines:
            text = line.strip()
            if text and not text.startswith("#"):
                yield text
            if stop.is_set():
                return
            self._show_prompt()

    def _show_prompt(self) -> None:
        if self.prompt:
            sys.stderr.write(self.prompt)
            sys.stderr.flush()

    def _fd_lines(self, fd: int, stop: threading.Event) -> Iterator[str]:
        """Lines from a file descriptor, checking ``stop`` between reads."""
        buf = b""
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], self.tick)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.decode("utf-8", "replace")
        if buf and not stop.is_set():
            yield buf.decode("utf-8", "replace")
