"""The processes a benchmark runs, and what /proc says about them.

- :class:`EmulatorProcess`: ``kiosk emulator --port 0`` in a process of its
  own (the secret in ``KIOSK_EMULATOR_SECRET``, never in argv), optionally
  with faults (``latency=10``: accepts at once, answers 10 s later);
- :class:`LineProcess`: any process that answers each stdin line with one
  stdout line: a ``kiosk run`` (:func:`kiosk_process`) or a floor
  (:mod:`bench.floors`). :meth:`LineProcess.tap` times one line from the
  write to its answer, as a person at the door waits for the beep;
- :class:`NotifySocket`: a NOTIFY_SOCKET we bind, so READY=1 is timed as
  systemd would see it;
- :func:`rss_mb`, :func:`cpu_seconds`: VmRSS/VmHWM and utime+stime of a
  whole process (every thread), from /proc.
"""

from __future__ import annotations

import os
import platform
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET = "bench-key", "bench-secret"
AUTH = {"X-TimeTrack-Api-Key": KEY, "X-TimeTrack-Api-Secret": SECRET}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def base_env(**extra: str) -> dict:
    """This environment without systemd's variables, unbuffered, with ``extra`` on top."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KIOSK_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "KIOSK_DISPLAY_SIM")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def closed_port() -> int:
    """A loopback port with nothing listening: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict:
    """What the figures were taken on: CPU model, cores, memory, Python, kernel, load."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": model or platform.machine(), "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


# ---------------------------------------------------------------- /proc


def rss_mb(pid: int) -> dict:
    """``{"rss": VmRSS, "peak": VmHWM}`` of ``pid`` in MB (2**20 bytes)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values["rss" if name == "VmRSS" else "peak"] = round(int(rest.split()[0]) / 1024, 1)
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


# ---------------------------------------------------------------- the emulator


class EmulatorProcess:
    """``kiosk emulator --port 0`` in its own process; its output in a file (one line per entry)."""

    def __init__(self, workdir: Path, *faults: str, name: str = "emulator"):
        self.log = workdir / f"{name}.out"
        args = [sys.executable, "-m", "kiosk", "emulator", "--port", "0", "--key", KEY]
        for fault in faults:
            args += ["--fault", fault]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=base_env(KIOSK_EMULATOR_SECRET=SECRET))
        deadline = time.monotonic() + 30
        while True:
            first = self.log.read_text().split("\n", 1)
            if len(first) == 2:
                self.url = first[0].split()[3]
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the emulator did not start: {self.log.read_text()}")
            time.sleep(0.02)
        self.admin = self.url.split("/api/", 1)[0] + "/_emulator"
        self.session = requests.Session()
        self.session.headers.update(AUTH)

    def stats(self) -> dict:
        return self.session.get(self.admin + "/stats", timeout=30).json()

    def creates(self) -> int:
        return self.stats()["creates"]

    def entries(self) -> list[dict]:
        return self.session.get(self.admin + "/entries", timeout=120).json()

    def reset(self) -> None:
        self.session.post(self.admin + "/reset", timeout=60).raise_for_status()

    def set_faults(self, **faults) -> None:
        self.session.put(self.admin + "/faults", json=faults, timeout=30).raise_for_status()

    def stop(self) -> None:
        self.session.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------- systemd's notify socket


class NotifySocket:
    """A bound NOTIFY_SOCKET; a thread keeps every datagram as (time.monotonic(), text)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def first(self, text: str, timeout: float = 30.0) -> float | None:
        """time.monotonic() of the first message holding the line ``text``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for at, message in list(self.messages):
                if text in message.splitlines():
                    return at
            if time.monotonic() > deadline:
                return None
            time.sleep(0.002)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


# ---------------------------------------------------------------- a process that answers lines


class LineProcess:
    """A process that answers each line on its stdin with one line on stdout (STATUS lines aside).

    ``started``, ``started_perf``: time.monotonic() and time.perf_counter() just before the
    process was created.
    """

    def __init__(self, argv: list[str], *, env: dict, stderr: Path, cwd: Path = ROOT, name: str = ""):
        self.name = name or Path(argv[-1]).name
        self.stderr_path = stderr
        with open(stderr, "wb") as err:
            self.started = time.monotonic()
            self.started_perf = time.perf_counter()
            self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, env=env)
        self._out = self.proc.stdout.fileno()
        self._buf = b""
        self.lines: list[str] = []  # every non-STATUS line answered so far

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, text: str) -> float:
        """Write one line; the time.perf_counter() just before."""
        data = text.encode() + b"\n"
        started = time.perf_counter()
        os.write(self.proc.stdin.fileno(), data)
        return started

    def answer(self, timeout: float = 30.0) -> tuple[float, str]:
        """The next non-STATUS line and the time.perf_counter() at which it was read."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                text = raw.decode(errors="replace")
                if not text.startswith("STATUS"):
                    self.lines.append(text)
                    return time.perf_counter(), text
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no answer within {timeout:g} s; stderr: {self.stderr()[-2000:]}")
            ready, _, _ = select.select([self._out], [], [], remaining)
            if ready:
                chunk = os.read(self._out, 65536)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited ({self.proc.wait()}); stderr: {self.stderr()[-2000:]}")
                self._buf += chunk

    def tap(self, text: str, timeout: float = 30.0) -> tuple[float, str]:
        """Seconds from writing ``text`` to reading its answer, and the answer."""
        started = self.send(text)
        at, line = self.answer(timeout)
        return at - started, line

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the way systemd stops the kiosk), then wait; SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        return self.proc.returncode


# ---------------------------------------------------------------- a kiosk


def write_config(path: Path, state_dir: Path, base_url: str, *, reader: str = "stdin",
                 feedback: str = 'type = "console"', rules: str = "debounce_seconds = 0\nmin_session_seconds = 0",
                 extra: str = "") -> Path:
    """A kiosk.toml for a benchmark kiosk: production defaults except what is named here.

    ``read_timeout = 5`` so that the slow server's 10 s answer runs into the timeout.
    The secret goes in a 0600 file next to the config.
    """
    secret = path.with_suffix(".secret")
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    path.write_text(textwrap.dedent("""\
        [kiosk]
        name = "bench"
        state_dir = "{state}"
        [api]
        base_url = "{url}"
        key = "{key}"
        secret_file = "{secret}"
        read_timeout = 5
        [reader]
        type = "{reader}"
        [feedback]
        {feedback}
        [rules]
        {rules}
        [clock]
        sync_file = ""
        """).format(state=state_dir, url=base_url, key=KEY, secret=secret, reader=reader, feedback=feedback,
                    rules=rules) + extra)
    path.chmod(0o640)
    return path


def kiosk_process(config: Path, *, name: str, simulated_rc522: bool = False, notify: NotifySocket | None = None,
                  **env: str) -> LineProcess:
    """``kiosk run`` (over the simulated RC522 through :mod:`bench.simkiosk` if asked), log to a file.

    The log level is WARNING, or ``$BENCH_KIOSK_LOG_LEVEL`` (the log is ``<config>.log`` in the work
    directory: ``python -m bench --keep`` keeps it).
    """
    module = "bench.simkiosk" if simulated_rc522 else "kiosk"
    extra = dict(env)
    if notify is not None:
        extra["NOTIFY_SOCKET"] = notify.path
    level = os.environ.get("BENCH_KIOSK_LOG_LEVEL", "WARNING")  # DEBUG: see what a slow tap waited on
    return LineProcess([sys.executable, "-m", module, "--config", str(config), "run", "--log-level", level],
                       env=base_env(**extra), stderr=config.with_suffix(".log"), name=name)
