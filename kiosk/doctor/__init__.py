"""``kiosk doctor``: is this kiosk set up to work? One line per check, and a fix for each problem.

Checks (names as used by ``only=`` and in the output):

- ``config``: the configuration file loads.
- ``spi``: ``/dev/spidev<bus>.<device>`` exists and this user may read and write it (mfrc522 only).
- ``reader``: the RC522 answers and VersionReg names a known chip (mfrc522); the
  keyboard reader's device exists and is readable; stdin: nothing to check.
- ``gpio``: GPIO device nodes exist and are accessible, and the configured LEDs and
  buzzer can be set up with gpiozero's default pin factory (feedback.type = "gpio").
- ``display``: the door display's packages, fonts and device answer (when one is configured).
- ``clock``: which source vouches for the clock (the kernel's NTP state, ``clock.sync_file``,
  or TimeTrack's Date header), the measured skew, and how many entries wait for a trusted clock.
- ``api``: TimeTrack is reachable and accepts the credentials (a harmless authenticated GET).
- ``state``: the state directory exists (or can be created), is writable, is not world-writable.
- ``store``: the SQLite store opens and passes ``PRAGMA integrity_check``; queue and rejected counts.
- ``secret``: the file holding the API secret (or the config file, if the secret is inline)
  is readable by its owner only.

This module holds the frame (running, masking, rendering); the checks live in
:mod:`~kiosk.doctor.hardware` (spi, reader, gpio), :mod:`~kiosk.doctor.service`
(clock, api) and :mod:`~kiosk.doctor.files` (state, store, secret).

Every check catches its own errors: a problem becomes a ``fail`` line, never a
traceback. The API secret never appears in any detail or fix (it is masked as a
last step, whatever a library or a server put into a message).

Note: the reader check opens the chip and soft-resets it (the library's set-up);
a running daemon's reader notices ("chip lost its settings") and sets it up again
within seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kiosk import config
from kiosk.config import Settings
from kiosk.exc import ConfigError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)
CHECKS = ("config", "spi", "reader", "gpio", "display", "clock", "api", "state", "store", "secret")

DEV_DIR = "/dev"  # tests point this at a temporary directory
PING_TIMEOUT_MAX = 10.0  # seconds: the doctor never waits longer than this for one answer
MASK = "********"
CLOCK_FIX = "sudo timedatectl set-ntp true; check the network and NTP (timedatectl timesync-status)"


@dataclass(frozen=True)
class Check:
    """One check's result. ``fix`` is one line saying what to do ("" when ok or skipped);
    ``data``: machine-readable facts for scripts and metrics (e.g. the clock's ``clock_synced``)."""

    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.data:
            del out["data"]
        return out


# ---------------------------------------------------------------- entry points


def diagnose(path: str | os.PathLike | None = None, *, only: Iterable[str] | None = None) -> list[Check]:
    """Load the configuration at ``path`` (see :func:`kiosk.config.resolve_path`) and run the checks.

    A configuration error does not stop the doctor: it becomes the failed
    ``config`` check and the checks that need no configuration still run.
    """
    try:
        settings = config.load(config.resolve_path(str(path) if path else None), require_api=False)
    except ConfigError as exc:
        return run_checks(None, only=only, config_error=exc)
    return run_checks(settings, only=only)


def run_checks(settings: Settings | None, *, only: Iterable[str] | None = None,
               config_error: BaseException | None = None) -> list[Check]:
    """Run the checks (all, or those named in ``only``) and return their results in order.

    ``settings`` None (with ``config_error``, the reason): the ``config`` check
    fails, ``spi``/``gpio`` check the default device nodes, ``clock`` uses the
    default sync file, and the checks that need the configuration are skipped.
    The ``config`` check is always included when the configuration failed.
    Raises ValueError for an unknown name in ``only``.
    """
    wanted = set(CHECKS) if only is None else set(only)
    unknown = wanted - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(sorted(unknown))} (known: {', '.join(CHECKS)})")
    if settings is None and config_error is None:
        config_error = ConfigError(None, None, "no configuration given")
    if config_error is not None:
        wanted.add("config")
    secret = settings.api.secret if settings is not None else ""
    results = []
    for name in CHECKS:
        if name not in wanted:
            continue
        results.append(_mask(_run_one(name, settings, config_error), secret))
    return results


def exit_code(checks: Iterable[Check]) -> int:
    """0 when no check failed (warnings and skips do not fail), else 1."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def render(checks: Iterable[Check], as_json: bool = False) -> str:
    """Text for the terminal: one line per check plus an indented ``fix:`` line; or a JSON list."""
    checks = list(checks)
    if as_json:
        return json.dumps([c.to_dict() for c in checks], indent=2)
    lines = []
    for c in checks:
        lines.append(f"  {c.status:<5} {c.name:<8} {c.detail}".rstrip())
        if c.fix and c.status in (WARN, FAIL):
            lines.append(f"{'':17}fix: {c.fix}")
    return "\n".join(lines)


# ---------------------------------------------------------------- plumbing


def _run_one(name: str, settings: Settings | None, config_error: BaseException | None) -> Check:
    try:
        if name == "config":
            return check_config(settings, config_error)
        return _CHECK_FUNCS[name](settings)
    except Exception as exc:  # a doctor must not crash: whatever went wrong is the answer
        return Check(name, FAIL, f"the check itself failed: {_describe(exc)}",
                     "this is a bug in kiosk doctor; please report it with this line")


def _mask(check: Check, secret: str) -> Check:
    if not secret:
        return check
    return replace(check, detail=check.detail.replace(secret, MASK), fix=check.fix.replace(secret, MASK))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _dev(path: str) -> str:
    """``/dev/...`` under :data:`DEV_DIR`."""
    return os.path.join(DEV_DIR, path.removeprefix("/dev/"))


def _needs_config(name: str) -> Check:
    return Check(name, SKIP, "needs a valid configuration (see the config check)")


# ---------------------------------------------------------------- config


def check_config(settings: Settings | None, config_error: BaseException | None = None) -> Check:
    if config_error is not None or settings is None:
        reason = str(config_error) if config_error is not None else "no configuration given"
        return Check("config", FAIL, reason,
                     "correct the file/key named above, then run: kiosk config check")
    return Check("config", OK, f"{settings.path or '(built-in settings)'} loads")


from kiosk.doctor.files import check_secret, check_state, check_store  # noqa: E402 - they need the above
from kiosk.doctor.hardware import check_display, check_gpio, check_reader, check_spi  # noqa: E402
from kiosk.doctor.service import check_api, check_clock  # noqa: E402

_CHECK_FUNCS: dict[str, Callable[[Settings | None], Check]] = {
    "spi": check_spi,
    "reader": check_reader,
    "gpio": check_gpio,
    "display": check_display,
    "clock": check_clock,
    "api": check_api,
    "state": check_state,
    "store": check_store,
    "secret": check_secret,
}

__all__ = ["CHECKS", "Check", "diagnose", "exit_code", "render", "run_checks"]
