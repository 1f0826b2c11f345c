#!/usr/bin/env python3
"""Cost of an idle RC522 reader: the kiosk's Mfrc522Reader vs the unpatched mfrc522 library.

Runs each over the fake chip (kiosk.sim.rc522's board as the reader's factory,
the real library code, no card in the field) for N seconds and prints polls per second, SPI transfers
per poll and CPU percent of one core (process time over wall time):

- kiosk: ``Mfrc522Reader.taps()`` at ``reader.poll_interval`` (default 0.1 s);
- library: ``SimpleMFRC522.read_id()``'s loop, i.e. ``read_id_no_block()``
  called back to back, as the library does;
- library + sleep: the same with a sleep of the poll interval between calls,
  the usual fix people apply, which leaves the 2,000-transfer wait loop.

Over the fake a transfer is a Python call of a few microseconds; through
spidev on a Pi it is an ioctl plus 16 SPI clocks at 1 MHz, so the CPU figures
here are a floor, and the transfer counts are what carries over to hardware.

    .venv/bin/python bench/idle_poll.py [--seconds 5] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk.config import ReaderSettings  # noqa: E402
from kiosk.sim import rc522 as fakespi  # noqa: E402
from kiosk.readers.mfrc522 import Mfrc522Reader  # noqa: E402


@dataclass
class Result:
    name: str
    polls: int
    transfers: int
    wall: float
    cpu: float

    @property
    def per_second(self) -> float:
        return self.polls / self.wall

    @property
    def per_poll(self) -> float:
        return self.transfers / max(self.polls, 1)

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu / self.wall


def kiosk_reader(seconds: float, interval: float) -> Result:
    hw = fakespi.board()
    reader = Mfrc522Reader(ReaderSettings(poll_interval=interval), factory=hw)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    hw.chip.reset_counters()
    polls = reader.polls
    cpu, wall = time.process_time(), time.monotonic()
    timer.start()
    for _ in reader.taps(stop):
        pass
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    result = Result("kiosk Mfrc522Reader", reader.polls - polls, hw.chip.transfers, wall, cpu)
    reader.close()
    return result


def library_loop(seconds: float, sleep: float = 0.0) -> Result:
    hw = fakespi.board()
    simple = hw.mfrc522.SimpleMFRC522()  # the unchanged library, over the fake board
    hw.chip.reset_counters()
    polls = 0
    cpu, wall = time.process_time(), time.monotonic()
    deadline = wall + seconds
    while time.monotonic() < deadline:
        if simple.read_id_no_block() is not None:
            raise SystemExit("a card answered: the field should be empty")
        polls += 1
        if sleep:
            time.sleep(sleep)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    name = f"library + {sleep:g} s sleep" if sleep else "library read_id loop"
    return Result(name, polls, hw.chip.transfers, wall, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each run lasts (default 5)")
    parser.add_argument("--interval", type=float, default=ReaderSettings().poll_interval,
                        help="poll interval in seconds (default: reader.poll_interval, 0.1)")
    args = parser.parse_args(argv)

    print(f"Idle RC522 over the fake chip, {args.seconds:g} s per run, poll interval {args.interval:g} s\n")
    results = [kiosk_reader(args.seconds, args.interval), library_loop(args.seconds),
               library_loop(args.seconds, args.interval)]
    print(f"{'':24} {'polls/s':>9} {'SPI transfers/poll':>19} {'CPU % of a core':>16}")
    for r in results:
        print(f"{r.name:24} {r.per_second:9.1f} {r.per_poll:19.1f} {r.cpu_percent:16.2f}")
    kiosk = results[0]
    print()
    for r in results[1:]:
        print(f"{r.name} / kiosk: {r.per_poll / kiosk.per_poll:.0f}x the SPI transfers per poll, "
              f"{r.cpu_percent / max(kiosk.cpu_percent, 1e-9):.0f}x the CPU")
    ok = kiosk.per_poll <= 10 and kiosk.cpu_percent < 2.0
    print(f"\nkiosk target (<= 10 transfers per idle poll, < 2 % of a core): {'met' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
