"""Run the real `kiosk` daemon as a subprocess fed on stdin, for end-to-end and crash tests."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

KIOSK = [sys.executable, "-m", "kiosk"]
TAP_GAP = 0.005  # seconds between scripted taps


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def closed_port() -> int:
    """A loopback port with nothing listening: the API is unreachable (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_lines(values: dict) -> str:
    """``key = value`` lines (strings quoted as they are, numbers and booleans as TOML writes them)."""
    def value(v):
        if isinstance(v, bool):
            return str(v).lower()
        return f'"{v}"' if isinstance(v, str | Path) else str(v)
    return "\n".join(f"{k} = {value(v)}" for k, v in values.items())


def write_config(path: Path, state_dir: Path, base_url: str, *, extra: str = "", secret: str = "test-secret",
                 key: str = "test-key", debounce: float = 0, min_session: float = 0,
                 secret_file: Path | None = None, name: str = "test-kiosk", api: dict | None = None,
                 clock: dict | None = None) -> Path:
    """A kiosk.toml for a daemon fed on stdin with console feedback; ``api`` and ``clock`` add to (or
    override) those sections' keys, ``extra`` is appended as is (further sections)."""
    credential = {"secret_file": secret_file} if secret_file else {"secret": secret}
    api_keys = {"base_url": base_url, "key": key, **credential, "backoff_initial": 0.05, "backoff_max": 0.5,
                "probe_interval": 0.2, "connect_timeout": 1, "read_timeout": 2, **(api or {})}
    sections = {
        "kiosk": {"name": name, "state_dir": state_dir},
        "api": api_keys,
        "reader": {"type": "stdin"},
        "feedback": {"type": "console"},
        "rules": {"debounce_seconds": debounce, "min_session_seconds": min_session},
        "clock": {"sync_file": "", **(clock or {})},
    }
    path.write_text("".join(f"[{section}]\n{_toml_lines(keys)}\n" for section, keys in sections.items())
                    + textwrap.dedent(extra))
    path.chmod(0o640)  # it holds the API secret: not for everyone
    return path


def kiosk(config: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*KIOSK, "--config", str(config), *args], capture_output=True, text=True,
                            env=env or clean_env(), timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"kiosk {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def kiosk_json(config: Path, *args: str):
    return json.loads(kiosk(config, *args, "--json").stdout)


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KIOSK_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Daemon:
    """`kiosk run` with stdin and stdout pipes."""

    def __init__(self, config: Path, *, log_level: str = "WARNING", env: dict | None = None):
        self.proc = subprocess.Popen(
            [*KIOSK, "--config", str(config), "run", "--log-level", log_level],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**clean_env(), **(env or {})},
        )
        self._buf = b""
        self._stderr: str | None = None
        self._err = b""
        self._last_tap = 0.0

    def tap(self, badge: str) -> None:
        # Pace taps like a person would, at least TAP_GAP apart: with min_session_seconds = 0
        # two taps within the API's millisecond would rightly be "too soon".
        wait = self._last_tap + TAP_GAP - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_tap = time.monotonic()
        self.proc.stdin.write(badge.encode() + b"\n")
        self.proc.stdin.flush()

    def line(self, timeout: float = 15.0, *, skip_status: bool = True) -> str:
        """Next feedback line (STATUS lines skipped); AssertionError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                text = raw.decode()
                if not (skip_status and text.startswith("STATUS")):
                    return text
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no feedback line in time; stderr: " + self.stderr_so_far())
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise AssertionError("daemon exited; stderr: " + self.stderr_so_far())
                self._buf += chunk

    def stderr_so_far(self) -> str:
        """What the daemon logged so far (all of it once it has exited)."""
        if self._stderr is not None:
            return self._stderr
        if self.proc.poll() is None:
            while select.select([self.proc.stderr], [], [], 0)[0]:
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                self._err += chunk
            return self._err.decode(errors="replace")
        self._stderr = (self._err + self.proc.stderr.read()).decode(errors="replace")
        return self._stderr

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        """Wait until the daemon has logged ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr_so_far():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not logged; stderr: {self.stderr_so_far()}")
            select.select([self.proc.stderr], [], [], 0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipes()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self._close_pipes()
        return code

    def close_input(self) -> int:
        self.proc.stdin.close()
        code = self.proc.wait(20)
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        self.stderr_so_far()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass
