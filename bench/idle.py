"""CPU of a whole idle ``kiosk run`` over the simulated MFRC522, next to the stock library polled at 10 Hz.

Both run at the same time, for the same window, as processes of their own,
measured the same way: utime + stime of every thread from /proc, over the
wall time of the window, as a percentage of one core.

- the daemon: ``python -m bench.simkiosk`` (``kiosk run`` with
  ``reader.type = "mfrc522"`` over the simulated board), console feedback,
  the API up (an emulator in its own process), no card: reader polls at
  ``reader.poll_interval`` (0.1 s), the main loop's housekeeping, the sender idle;
- the stock library: ``SimpleMFRC522().read_id_no_block()`` every 0.1 s on
  the same simulated board (``python -m bench.idle stock``), which is what a
  kiosk built on the library as documented would run.

Over the simulator an SPI transfer is a Python call, not an ioctl and 16
clocks at 1 MHz: the percentages are this machine's, not a Pi Zero's (whose
core is several times slower); the ratio carries over better than the figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.procs import EmulatorProcess, LineProcess, NotifySocket, base_env, cpu_seconds, kiosk_process, write_config

SETTLE = 2.0  # seconds after READY=1 before the window opens (start-up work is not idle)


def stock_loop(interval: float = 0.1) -> None:
    """The unchanged mfrc522 library over the simulated board, polled every ``interval`` s, forever."""
    from kiosk.sim import rc522

    simple = rc522.board().mfrc522.SimpleMFRC522()
    next_poll = time.monotonic()
    while True:
        simple.read_id_no_block()
        next_poll += interval
        time.sleep(max(0.0, next_poll - time.monotonic()))


def measure(workdir: Path, *, seconds: float, seed: Path, log=print) -> dict:
    from bench import stores

    state = workdir / "idle"
    stores.copy(seed, state)
    with EmulatorProcess(workdir, name="emulator-idle") as emu:
        config = write_config(workdir / "idle.toml", state, emu.url, reader="mfrc522")
        notify = NotifySocket(workdir / "idle.notify")
        daemon = kiosk_process(config, name="idle-daemon", simulated_rc522=True, notify=notify)
        stock = LineProcess([sys.executable, "-m", "bench.idle", "stock"], env=base_env(),
                            stderr=workdir / "idle-stock.log", name="stock")
        try:
            if notify.first("READY=1", timeout=60) is None:
                raise RuntimeError("the idle daemon never said READY=1: " + daemon.stderr()[-2000:])
            time.sleep(SETTLE)
            log(f"idle: {seconds:g} s window, daemon over the simulated MFRC522 and the stock library at 10 Hz")
            cpu0 = {p.name: cpu_seconds(p.pid) for p in (daemon, stock)}
            wall0 = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - wall0
            cpu = {p.name: cpu_seconds(p.pid) - cpu0[p.name] for p in (daemon, stock)}
            alive = daemon.proc.poll() is None and stock.proc.poll() is None
        finally:
            daemon.stop()
            stock.stop()
            notify.close()
    if not alive:
        raise RuntimeError("a process of the idle measurement died: " + daemon.stderr()[-2000:] + stock.stderr())
    return {"daemon": round(100 * cpu["idle-daemon"] / wall, 2),
            "stock_library_10hz": round(100 * cpu["stock"] / wall, 2),
            "seconds": round(wall, 1)}


if __name__ == "__main__":
    if sys.argv[1:] == ["stock"]:
        stock_loop()
    else:
        sys.exit("usage: python -m bench.idle stock")
