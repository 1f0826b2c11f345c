"""Doctor checks of the files: the state directory, the store, the secret."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import tomllib

from kiosk import config
from kiosk.config import Settings
from kiosk.doctor import (FAIL, OK, SKIP, WARN, Check, _describe, _needs_config, _user)


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
    restore = ("stop the daemon (sudo systemctl stop kiosk), then restore the last backup: "
               "sudo -u kiosk kiosk restore BACKUP.sqlite (backups are made with: kiosk backup FILE)")
    recover = restore + "; without a backup, copy the file aside and recover it: sqlite3 kiosk.sqlite .recover"
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        return Check("store", FAIL, f"{path}: cannot read: {exc.strerror}",
                     "run as the kiosk's user, or check the file's owner and mode")
    if header and header != SQLITE_HEADER:
        return Check("store", FAIL, f"{path} is not an SQLite database (damaged or replaced)",
                     restore)
    try:
        with _quiet_sqlitedict():
            store = Store(path, create=False)
    except StoreError as exc:
        return Check("store", FAIL, str(exc), f"check the file's owner and mode; if it is damaged: {restore}")
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

