"""``kiosk doctor``: is this kiosk set up to work? One line per check, and a fix for each problem.

Checks (names as used by ``only=`` and in the output):

- ``config``: the configuration file loads.
- ``spi``: ``/dev/spidev<bus>.<device>`` exists and this user may read and write it (mfrc522 only).
- ``reader``: the RC522 answers and VersionReg names a known chip (mfrc522); the
  keyboard reader's device exists and is readable; stdin: nothing to check.
- ``gpio``: GPIO device nodes exist and are accessible, and the configured LEDs and
  buzzer can be set up with gpiozero's default pin factory (feedback.type = "gpio").
- ``clock``: the system clock is synchronised (``clock.sync_file`` exists).
- ``api``: TimeTrack is reachable and accepts the credentials (a harmless authenticated GET).
- ``state``: the state directory exists (or can be created), is writable, is not world-writable.
- ``store``: the SQLite store opens and passes ``PRAGMA integrity_check``; queue and rejected counts.
- ``secret``: the file holding the API secret (or the config file, if the secret is inline)
  is readable by its owner only.

Every check catches its own errors: a problem becomes a ``fail`` line, never a
traceback. The API secret never appears in any detail or fix (it is masked as a
last step, whatever a library or a server put into a message).

Note: the reader check opens the chip and soft-resets it (the library's set-up);
a running daemon's reader notices ("chip lost its settings") and sets it up again
within seconds.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import stat
import threading
import time
import tomllib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlsplit

from kiosk import config
from kiosk.config import Settings
from kiosk.exc import Cause, ConfigError, HardwareError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)
CHECKS = ("config", "spi", "reader", "gpio", "clock", "api", "state", "store", "secret")

DEV_DIR = "/dev"  # tests point this at a temporary directory
PING_TIMEOUT_MAX = 10.0  # seconds: the doctor never waits longer than this for one answer
MASK = "********"


@dataclass(frozen=True)
class Check:
    """One check's result. ``fix`` is one line saying what to do ("" when ok or skipped)."""

    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


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


# ---------------------------------------------------------------- SPI


def check_spi(settings: Settings | None) -> Check:
    reader = settings.reader if settings is not None else config.ReaderSettings()
    if settings is not None and reader.type != "mfrc522":
        return Check("spi", SKIP, f'reader.type = "{reader.type}": no SPI needed')
    note = "" if settings is not None else " (default reader.spi_bus/spi_device: configuration not loaded)"
    path = _dev(f"/dev/spidev{reader.spi_bus}.{reader.spi_device}")
    if not os.path.exists(path):
        return Check(
            "spi", FAIL, f"{path} not found: SPI is not enabled{note}",
            "sudo raspi-config nonint do_spi 0 (writes dtparam=spi=on to /boot/firmware/config.txt), "
            "then reboot; check reader.spi_bus / reader.spi_device",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        user = _user()
        return Check("spi", FAIL, f"{path} present, but user {user} may not read/write it{note}",
                     f"sudo usermod -aG spi {user}, then log in again / restart the service")
    return Check("spi", OK, f"{path} present, read/write{note}")


# ---------------------------------------------------------------- reader


KNOWN_GOOD_VERSIONS = {0x91: "MFRC522 v1.0", 0x92: "MFRC522 v2.0"}
NOT_ANSWERING_FIX = ("reader not answering: check wiring, 3.3 V (never 5 V), SDA on CE0 (pin 24), "
                     "RST on reader.reset_pin")


def check_reader(settings: Settings | None) -> Check:
    if settings is None:
        return _needs_config("reader")
    kind = settings.reader.type
    if kind == "stdin":
        return Check("reader", SKIP, 'reader.type = "stdin": badge ids are read from standard input, no hardware')
    if kind == "keyboard":
        return _check_keyboard(settings.reader)
    return _check_mfrc522(settings.reader)


def _check_keyboard(reader) -> Check:
    device = reader.device
    if not device:
        return Check("reader", FAIL, 'reader.type = "keyboard" but reader.device is not set',
                     "set reader.device to the reader's /dev/input/by-id/...-event-kbd path")
    if not os.path.exists(device):
        return Check("reader", FAIL, f"{device} not found (keyboard reader unplugged or wrong path)",
                     "plug the reader in; list devices with: ls -l /dev/input/by-id/")
    if not os.access(device, os.R_OK):
        user = _user()
        return Check("reader", FAIL, f"{device} present, but user {user} may not read it",
                     f"sudo usermod -aG input {user}, then log in again / restart the service")
    try:
        import evdev  # noqa: F401
    except ImportError:
        return Check("reader", FAIL, f"{device} readable, but python-evdev is not installed",
                     "pip install 'kiosk[keyboard]' (or evdev) in the kiosk's venv")
    return Check("reader", OK, f"keyboard reader {device} present, readable")


def _check_mfrc522(reader_settings) -> Check:
    from kiosk.readers.mfrc522 import VERSIONS, Mfrc522Reader

    where = f"/dev/spidev{reader_settings.spi_bus}.{reader_settings.spi_device}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RPi.GPIO: "This channel is already in use" (the daemon runs)
        try:
            reader = Mfrc522Reader(reader_settings)
        except HardwareError as exc:
            return Check("reader", FAIL, f"MFRC522 on {where}: {exc}", _reader_fix(exc.cause))
        try:
            version, problem = reader.chip.verify()
        except Exception as exc:
            return Check("reader", FAIL, f"MFRC522 on {where}: reading VersionReg failed ({_describe(exc)})",
                         NOT_ANSWERING_FIX)
        finally:
            reader.close()  # antenna off, SPI closed, reset pin released
    if version in (0x00, 0xFF):
        return Check("reader", FAIL, f"MFRC522 on {where}: reader not answering (VersionReg reads 0x{version:02X})",
                     NOT_ANSWERING_FIX)
    if version in KNOWN_GOOD_VERSIONS:
        name = KNOWN_GOOD_VERSIONS[version]
        if problem:
            return Check("reader", WARN, f"{name} on {where} (VersionReg 0x{version:02X}), but {problem}",
                         "check the power supply and wiring (a chip that loses its settings is browning out)")
        return Check("reader", OK, f"{name} on {where} (VersionReg 0x{version:02X})")
    name = VERSIONS.get(version, "unknown chip")
    extra = f"; {problem}" if problem else ""
    return Check("reader", WARN, f"{where}: VersionReg 0x{version:02X} ({name}): not a genuine NXP MFRC522{extra}",
                 "clone chips often work but read less reliably; if taps are missed, "
                 "use a board with a genuine NXP chip")


def _reader_fix(cause: Cause) -> str:
    match cause:
        case Cause.DEVICE_MISSING:
            return "sudo raspi-config nonint do_spi 0, then reboot; check reader.spi_bus / reader.spi_device"
        case Cause.PERMISSION:
            return f"sudo usermod -aG spi,gpio {_user()}, then log in again / restart the service"
        case Cause.NOT_A_PI:
            return ('run on the Raspberry Pi (on a Pi 5: pip install rpi-lgpio in the venv); '
                    'elsewhere set reader.type = "stdin"')
        case Cause.MISSING_PACKAGE:
            return ("pip install the kiosk with its Raspberry Pi extras (mfrc522, spidev, RPi.GPIO or rpi-lgpio) "
                    "in the venv")
        case Cause.PIN_SETUP:
            return (f"check reader.reset_pin; sudo usermod -aG gpio {_user()}; "
                    "on a Pi 5 install rpi-lgpio in place of RPi.GPIO")
    return "see the message above"


# ---------------------------------------------------------------- GPIO


def _gpio_nodes() -> list[str]:
    return sorted(glob.glob(_dev("/dev/gpiochip*")) + glob.glob(_dev("/dev/gpiomem*")))


def check_gpio(settings: Settings | None) -> Check:
    if settings is not None and settings.feedback.type != "gpio":
        return Check("gpio", SKIP, f'feedback.type = "{settings.feedback.type}": no GPIO needed')
    nodes = _gpio_nodes()
    if not nodes:
        return Check("gpio", FAIL, f"no GPIO on this machine (no {_dev('/dev/gpiochip*')} or {_dev('/dev/gpiomem*')})",
                     'run this on the Raspberry Pi; on another machine set feedback.type = "console" or "none"')
    user = _user()
    denied = [n for n in nodes if not os.access(n, os.R_OK | os.W_OK)]
    if len(denied) == len(nodes):
        return Check("gpio", FAIL, f"{', '.join(nodes)} present, but user {user} may not use them",
                     f"sudo usermod -aG gpio {user}, then log in again / restart the service")
    if settings is None:
        return Check("gpio", OK, f"{', '.join(n for n in nodes if n not in denied)} accessible "
                                 "(devices not tried: configuration not loaded)")
    return _try_feedback(settings.feedback, nodes, denied)


def _try_feedback(feedback, nodes: list[str], denied: list[str]) -> Check:
    from gpiozero import Device

    from kiosk.feedback.gpio import GpioFeedback

    fallbacks: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factory = None
        try:
            factory = Device._default_pin_factory()  # our own: the process-wide default stays unset
        except Exception as exc:
            fallbacks = [str(w.message) for w in caught]
            tried = "; ".join(fallbacks) or _describe(exc)
            return Check("gpio", FAIL, f"no usable pin library: {tried}",
                         "install lgpio in the kiosk's venv (pip install lgpio, or a venv with "
                         "--system-site-packages and apt install python3-lgpio)")
        try:
            try:
                device = GpioFeedback(feedback, pin_factory=factory)
            except Exception as exc:
                text = str(exc) or exc.__class__.__name__
                cause = getattr(exc, "cause", Cause.UNKNOWN)
                if cause is Cause.PIN_BUSY:
                    return Check("gpio", WARN, f"{text}: is the kiosk daemon running? (then this is expected)",
                                 "stop the daemon (sudo systemctl stop kiosk) to test the pins, or check "
                                 "that no other program uses them")
                if cause is Cause.PIN_CONFLICT:
                    return Check("gpio", FAIL, text, "give each LED and the buzzer its own pin in [feedback]")
                return Check("gpio", FAIL, text,
                             f"check the [feedback] pins and wiring; sudo usermod -aG gpio {_user()}")
            device.close()
        finally:
            factory.close()
    parts = _feedback_parts(feedback)
    name = type(factory).__name__
    return Check("gpio", OK, f"{', '.join(n for n in nodes if n not in denied)} accessible; "
                             f"{parts} set up with {name}")


def _feedback_parts(feedback) -> str:
    parts = []
    if feedback.leds == "pair":
        parts.append(f"LEDs green GPIO{feedback.green_pin}/red GPIO{feedback.red_pin}")
    elif feedback.leds == "rgb":
        parts.append(f"RGB LED GPIO{feedback.red_pin}/{feedback.green_pin}/{feedback.blue_pin}")
    if feedback.buzzer in ("active", "passive"):
        parts.append(f"{feedback.buzzer} buzzer GPIO{feedback.buzzer_pin}")
    return ", ".join(parts) or "no LEDs, no buzzer"


# ---------------------------------------------------------------- clock


CLOCK_FIX = "sudo timedatectl set-ntp true; check the network and NTP (timedatectl timesync-status)"


def check_clock(settings: Settings | None) -> Check:
    sync_file = settings.clock.sync_file if settings is not None else config.ClockSettings().sync_file
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if not sync_file:
        return Check("clock", SKIP, f"clock.sync_file is empty: sync check disabled (system time {now})")
    if os.path.exists(sync_file):
        return Check("clock", OK, f"synchronised ({sync_file} exists); system time {now}")
    return Check("clock", WARN,
                 f"not synchronised ({sync_file} missing); system time {now} may be wrong. Taps are still "
                 "recorded and corrected once the clock syncs", CLOCK_FIX)


# ---------------------------------------------------------------- API


def check_api(settings: Settings | None) -> Check:
    if settings is None:
        return _needs_config("api")
    api = settings.api
    present = {"api.base_url": api.base_url, "api.key": api.key, "secret": api.secret}
    if not any(present.values()):
        return Check("api", SKIP, "api not configured (kiosk run needs api.base_url, api.key and a secret)")
    missing = [k for k, v in present.items() if not v]
    if missing:
        return Check("api", FAIL, f"api partly configured: {', '.join(missing)} missing",
                     f"set {', '.join(missing)} (the secret: api.secret_file or the systemd credential "
                     f"{config.CREDENTIAL_NAME!r})")
    from kiosk.delivery.client import SendOutcome, TimeTrackClient

    api = replace(api, connect_timeout=min(api.connect_timeout, PING_TIMEOUT_MAX),
                  read_timeout=min(api.read_timeout, PING_TIMEOUT_MAX))
    try:
        client = TimeTrackClient(api)
    except ValueError as exc:
        return Check("api", FAIL, str(exc), "correct api.base_url")
    url = client.base_url
    host = urlsplit(url).hostname or url
    try:
        started = time.monotonic()
        result = client.ping()
        elapsed = (time.monotonic() - started) * 1000
    finally:
        client.close()
    message = result.message
    if result.outcome is SendOutcome.OK:
        return Check("api", OK, f"{url}: reachable, credentials accepted (HTTP {result.status}, {elapsed:.0f} ms)")
    if result.outcome is SendOutcome.AUTH:
        return Check("api", FAIL, f"{url}: credentials rejected ({message})",
                     f"check api.key ({_masked_key(api.key)}) and the secret (api.secret_file or the "
                     "systemd credential): they must match the API key in TimeTrack")
    if result.status is None:
        low = message.lower()
        if "tls error" in low:
            if "not yet valid" in low:
                return Check("api", FAIL, f"{url}: TLS failed: certificate not yet valid ({message}); "
                                          "typical before the clock is synchronised",
                             f"let the clock sync first (see the clock check): {CLOCK_FIX}")
            return Check("api", FAIL, f"{url}: TLS failed ({message})",
                         "check the system time, api.ca_bundle and the server's certificate chain")
        if "resolve" in low or "name or service" in low or "nodename" in low or "resolution" in low:
            return Check("api", FAIL, f"{url}: unreachable: DNS lookup of {host} failed ({message})",
                         "check the host name in api.base_url and the network/DNS (resolvectl status)")
        if "timeout" in low:
            return Check("api", FAIL, f"{url}: unreachable: no answer in time ({message})",
                         "check the network, a firewall or proxy, and that the server is up")
        return Check("api", FAIL, f"{url}: unreachable ({message})",
                     "check api.base_url (host and port), the network, and that the server is up")
    status = result.status
    if status in (408, 429):
        return Check("api", WARN, f"{url}: reachable, but the server asks to slow down ({message})",
                     "try again later; the sender backs off by itself")
    if 300 <= status < 400:
        return Check("api", FAIL, f"{url}: {message}", "correct api.base_url (scheme, host and path prefix)")
    if status == 404:
        return Check("api", FAIL, f"{url}: not found ({message})",
                     "correct api.base_url: it must point at the API root that holds /attendances")
    if status >= 500:
        return Check("api", FAIL, f"{url}: server error ({message})",
                     "the TimeTrack server has a problem: try again later; queued entries wait safely")
    return Check("api", FAIL, f"{url}: unexpected answer ({message})", "check api.base_url and the API key's rights")


def _masked_key(key: str) -> str:
    return key[:4] + "…" if len(key) > 8 else "…"


# ---------------------------------------------------------------- state dir and store


def check_state(settings: Settings | None) -> Check:
    if settings is None:
        return _needs_config("state")
    path = settings.kiosk.state_dir
    user = _user()
    create = f"sudo install -d -o <kiosk user> -m 0750 {path} (or StateDirectory=kiosk in the systemd unit)"
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(parent) and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)  # the store creates missing parents too
        if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
            return Check("state", WARN, f"{path} missing; the daemon will create it ({parent} is writable)", create)
        return Check("state", FAIL, f"{path} missing, and {parent} is not writable by {user}: nothing can be stored",
                     create)
    if not os.path.isdir(path):
        return Check("state", FAIL, f"{path} exists but is not a directory", "set kiosk.state_dir to a directory")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if not os.access(path, os.W_OK | os.X_OK):
        return Check("state", FAIL, f"{path} (mode {mode:04o}) is not writable by user {user}",
                     f"run as the kiosk's user (sudo -u <kiosk user> kiosk doctor), or chown it to {user}")
    if mode & stat.S_IWOTH:
        return Check("state", WARN, f"{path} is world-writable (mode {mode:04o}): anyone can replace the store",
                     f"chmod o-w {path} (0750 recommended)")
    return Check("state", OK, f"{path} writable by {user}, mode {mode:04o}")


SQLITE_HEADER = b"SQLite format 3\x00"


@contextlib.contextmanager
def _quiet_sqlitedict():
    """sqlitedict reports a failed connect with a logged traceback and a dying thread: keep both off screen."""
    loggers = [logging.getLogger(name) for name in ("sqlitedict", "sqlitedict.SqliteMultithread")]
    disabled, hook = [lg.disabled for lg in loggers], threading.excepthook
    for lg in loggers:
        lg.disabled = True
    threading.excepthook = lambda args: None
    try:
        yield
    finally:
        threading.excepthook = hook
        for lg, was in zip(loggers, disabled):
            lg.disabled = was


def check_store(settings: Settings | None) -> Check:
    if settings is None:
        return _needs_config("store")
    from kiosk.exc import StoreError
    from kiosk.store import Store

    path = settings.store_path
    if not path.exists():
        return Check("store", WARN, f"no store at {path} yet (has the daemon run?)",
                     "start the daemon once (sudo systemctl start kiosk); it creates the store")
    recover = "stop the daemon, copy the file aside, and recover it: sqlite3 kiosk.sqlite .recover"
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        return Check("store", FAIL, f"{path}: cannot read: {exc.strerror}",
                     "run as the kiosk's user, or check the file's owner and mode")
    if header and header != SQLITE_HEADER:
        return Check("store", FAIL, f"{path} is not an SQLite database (damaged or replaced)",
                     "stop the daemon, move the file aside and restore it from a backup")
    try:
        with _quiet_sqlitedict():
            store = Store(path, create=False)
    except StoreError as exc:
        return Check("store", FAIL, str(exc), "check the file's owner and mode; restore it from a backup if damaged")
    try:
        integrity = store.integrity_check()
        queued, rejected, flagged = store.outbox_count(), store.rejected_count(), store.flagged_count()
    except Exception as exc:
        return Check("store", FAIL, f"{path}: cannot read: {_describe(exc)}", recover)
    finally:
        store.close()
    if integrity != "ok":
        return Check("store", FAIL, f"{path}: integrity check failed: {integrity[:200]}", recover)
    counts = f"{queued} queued, {rejected} rejected, {flagged} flagged for review"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & stat.S_IWOTH:
        return Check("store", WARN, f"{path}: integrity ok, {counts}; but the file is world-writable (mode {mode:04o})",
                     f"chmod o-w {path}")
    if rejected:
        return Check("store", WARN, f"{path}: integrity ok, {counts}",
                     "review them with: kiosk queue list --rejected; fix the data and resend")
    return Check("store", OK, f"{path}: integrity ok, {counts}")


# ---------------------------------------------------------------- secret


def check_secret(settings: Settings | None) -> Check:
    if settings is None:
        return _needs_config("secret")
    api = settings.api
    if api.secret_file:
        return _private_file("secret", api.secret_file, "api.secret_file")
    if not api.secret:
        return Check("secret", SKIP, "no API secret configured")
    if settings.path and _inline_secret(settings.path):
        return _private_file("secret", settings.path, "config file with an inline api.secret", group_ok=True)
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and os.path.exists(os.path.join(cred_dir, config.CREDENTIAL_NAME)):
        return Check("secret", OK, f"from the systemd credential {config.CREDENTIAL_NAME!r} (private to the service)")
    return Check("secret", SKIP, "the secret comes from no file this check can see")


def _inline_secret(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return False
    api = raw.get("api")
    return isinstance(api, dict) and bool(api.get("secret"))


def _private_file(name: str, path: str, what: str, *, group_ok: bool = False) -> Check:
    """The secret's file must be the owner's alone (0600/0400).

    ``group_ok``: the config file with an inline secret may be shared with the
    kiosk's group (root:kiosk 0640): a warning, not a failure; others: a failure.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return Check(name, FAIL, f"{path} ({what}): {exc.strerror}", f"check {what}")
    mode = stat.S_IMODE(st.st_mode)
    owner = _owner(st.st_uid)
    if mode & stat.S_IRWXO or (mode & stat.S_IRWXG and not group_ok):
        return Check(name, FAIL, f"{path} ({what}) is open to {'others' if mode & stat.S_IRWXO else 'its group'} "
                                 f"(mode {mode:04o}, owner {owner})", f"chmod 600 {path}")
    if mode & stat.S_IRWXG:
        return Check(name, WARN, f"{path} ({what}) is readable by its group (mode {mode:04o}, owner {owner})",
                     f"chmod 600 {path}, or move the secret to api.secret_file (mode 0600)")
    if mode not in (0o600, 0o400):
        return Check(name, WARN, f"{path} ({what}): mode {mode:04o}, owner {owner}; 0600 or 0400 expected",
                     f"chmod 600 {path}")
    return Check(name, OK, f"{path} ({what}): mode {mode:04o}, owner {owner}; group and others cannot read it")


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


_CHECK_FUNCS: dict[str, Callable[[Settings | None], Check]] = {
    "spi": check_spi,
    "reader": check_reader,
    "gpio": check_gpio,
    "clock": check_clock,
    "api": check_api,
    "state": check_state,
    "store": check_store,
    "secret": check_secret,
}

__all__ = ["CHECKS", "Check", "diagnose", "exit_code", "render", "run_checks"]
