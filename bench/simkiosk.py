"""``kiosk`` over the simulated RC522: the benchmark's way to run a whole daemon with ``reader.type = "mfrc522"``.

    python -m bench.simkiosk --config kiosk.toml run

The same command-line entry point as ``kiosk`` (:func:`kiosk.cli.main`), with
:func:`kiosk.sim.rc522.installed` making a simulated board (the fake MFRC522
chip, its spidev and RPi.GPIO, under the unchanged mfrc522 library) the
reader's default factory for the life of the process. It is the only switch:
production code never looks for a simulator, and ``kiosk run`` itself cannot
be made to use one. No card is ever placed: the reader polls an empty field
(what :mod:`bench.idle` measures).
"""

from __future__ import annotations

import sys

from kiosk.cli import main
from kiosk.sim import rc522


def run() -> None:
    with rc522.installed():
        main(prog_name="kiosk")


if __name__ == "__main__":
    sys.exit(run())
