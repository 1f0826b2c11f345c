"""Benchmarks of what a person at the door feels, as whole processes: ``python -m bench [--quick] [--json]``.

Every figure comes from real ``kiosk run`` processes fed on stdin (the stdin
reader, console feedback, the real store on disk), TimeTrack emulators in
processes of their own, and floors measured in the same run, interleaved tap by
tap with the kiosks, so that a loaded machine shows in the floors as much as
in the figures. Latencies are given as p50, p99 and max, never as means.

One module per measurement:

- :mod:`bench.tap`: tap latency with the API up, down, slow, with a backlog
  (API down, and API up while it drains), with a failing display; the floors;
- :mod:`bench.startup`: process start to READY=1 and to the first tap answered,
  and the resident memory at both store sizes;
- :mod:`bench.idle`: CPU of the whole daemon over the simulated MFRC522, idle,
  next to the stock library polled at 10 Hz;
- :mod:`bench.flush`: draining a queue, against a bare ``requests.Session`` loop;
- :mod:`bench.burst`: 200 employees in 2 minutes;
- :mod:`bench.report`: the targets, pass or fail, as JSON, text or a Markdown table.

The parts they share: :mod:`bench.procs` (processes, notify socket, /proc),
:mod:`bench.floors` (the floor processes), :mod:`bench.simkiosk` (``kiosk``
over the simulated RC522), :mod:`bench.stats`.
"""
