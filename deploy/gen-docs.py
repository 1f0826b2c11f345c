#!/usr/bin/env python3
"""Generate the shell completion scripts and man pages from the click commands (``make docs``).

    python deploy/gen-docs.py            # rewrite deploy/completion/ and man/
    python deploy/gen-docs.py --check    # exit 1 if they differ from what the commands say now

Completion: click's own scripts (``_KIOSK_COMPLETE=bash_source kiosk``), which call
back into ``kiosk`` for the words, so they stay right as commands change; they
are committed so that install.sh needs nothing but the repository. Man pages:
click-man (an optional tool: ``pip install click-man``, in the ``docs`` extra),
one page per command (``kiosk.1``, ``kiosk-badge-add.1``...). The ``.TH`` line
carries the date of generation and is left out of the comparison.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPLETION = ROOT / "deploy" / "completion"
MAN = ROOT / "man"
SHELLS = {"bash": "kiosk.bash", "zsh": "_kiosk"}


def completion_scripts() -> dict[str, str]:
    from click.shell_completion import get_completion_class

    from kiosk.cli import main

    return {name: get_completion_class(shell)(main, {}, "kiosk", "_KIOSK_COMPLETE").source()
            for shell, name in SHELLS.items()}


def man_pages(date: str) -> dict[str, str]:
    from click_man.core import write_man_pages

    from kiosk import __version__
    from kiosk.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        write_man_pages("kiosk", main, version=__version__, target_dir=tmp, date=date)
        return {p.name: p.read_text() for p in sorted(Path(tmp).glob("*.1"))}


def _body(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(".TH "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    wanted = {COMPLETION / name: text for name, text in completion_scripts().items()}
    wanted |= {MAN / name: text for name, text in man_pages(datetime.date.today().isoformat()).items()}
    present = set(MAN.glob("*.1")) | {p for p in COMPLETION.glob("*") if p.is_file()}
    stale = sorted(str(p.relative_to(ROOT)) for p in present - set(wanted))
    differ = sorted(str(p.relative_to(ROOT)) for p, text in wanted.items()
                    if not p.exists() or _body(p.read_text()) != _body(text))
    if args.check:
        for name in differ:
            print(f"out of date: {name}")
        for name in stale:
            print(f"no such command any more: {name}")
        if differ or stale:
            print("run: make docs")
        return 1 if differ or stale else 0
    for path in stale:
        (ROOT / path).unlink()
    for path, text in wanted.items():
        if str(path.relative_to(ROOT)) in differ:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    print(f"{len(differ)} written, {len(stale)} removed, {len(wanted) - len(differ)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
