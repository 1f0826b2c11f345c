"""Replacing a file so that a reader, or a power cut, sees the old version or the new one, never half.

The metrics textfile, ``kiosk badge export`` and the emulator's data file are
written this way: a temporary file beside the target (``.NAME.*.tmp``, so a
leftover from a kill is easy to find), flushed and fsynced, given its mode,
renamed over the target, and the directory fsynced so that the rename itself
survives (some file systems refuse to fsync a directory: that is not an error).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


@contextmanager
def replaced(path: str | os.PathLike, *, mode: int | None = None, binary: bool = False,
             newline: str | None = None) -> Iterator[IO]:
    """A file open for writing that becomes ``path`` when the block ends without an exception
    (``mode``: its permission bits; else the temp file's 0600). On an exception the target is untouched.

        >>> with replaced(tmp / "out.txt", mode=0o644) as fh:   # doctest: +SKIP
        ...     fh.write("all or nothing\\n")
    """
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as fh:
            yield fh
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:  # the first error is the one to report
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
