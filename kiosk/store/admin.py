"""The sysadmin's changes to badges: the lifecycle, bulk import, and enrolment by tap.

Each change is one transaction with its audit line, which names who made it
(:attr:`AdminRecords.actor`, set by the ``kiosk`` command from ``SUDO_USER`` or
``LOGNAME``) and what changed, so the daemon can keep taking taps meanwhile.

Enrolment by tap: ``kiosk enroll`` leaves a request (``enrol:request``); the
daemon, on the next tap of an unknown badge, maps it in one transaction
(:meth:`AdminRecords.enrol`) and leaves the result (``enrol:result:<id>``) for
the waiting command, which collects it (:meth:`AdminRecords.end_enrolment`).
A request carries its expiry, so one left by a killed command lapses by itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlitedict import SqliteDict

from kiosk import clock, text
from kiosk.exc import Conflict, InputRefused, KioskError, NotFound, StoreError
from kiosk.model import Badge, from_iso, to_iso
from kiosk.store.db import TABLE, Database, decode, key

ENROL_REQUEST = "enrol:request"
NUDGE = "meta:nudge"
RESULT_KEPT = timedelta(days=1)  # an enrolment result waits this long for its command to collect it


def name(value: object) -> str:
    """A stored name as it may appear in a message: escaped and cut (see :func:`kiosk.text.escape`)."""
    return text.escape(value, limit=60)


def whoami() -> str:
    """The person behind a command: ``SUDO_USER`` (``sudo -u kiosk kiosk ...``), else ``LOGNAME``."""
    for name in ("SUDO_USER", "LOGNAME", "USER"):
        value = os.environ.get(name, "").strip()
        if value:
            return value[:64]
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.geteuid()}"


@dataclass(frozen=True)
class ImportSummary:
    """What an import did (or, with ``dry_run``, would do)."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    dry_run: bool = False

    def to_record(self) -> dict[str, Any]:
        return {"added": self.added, "changed": self.changed, "unchanged": self.unchanged,
                "removed": self.removed, "dry_run": self.dry_run}


@dataclass(frozen=True)
class _ImportPlan:
    summary: ImportSummary
    writes: dict[str, dict]
    deletes: list[str]
    lines: list[dict[str, Any]]


IMPORT_TRIES = 3


def _differs(old: Badge, username: str, label: str, enabled: bool) -> dict[str, list]:
    """The fields that change, as ``{"field": [old, new]}``."""
    changes: dict[str, list] = {}
    for name, new in (("username", username), ("label", label), ("enabled", enabled)):
        if getattr(old, name) != new:
            changes[name] = [getattr(old, name), new]
    return changes


class Changes(Database):
    """What every administrator's change shares: audit lines name :attr:`actor`, refusals pass through."""

    actor: str | None = None  # who runs the command (the CLI sets it); None in the daemon

    @contextmanager
    def _change(self) -> Iterator[SqliteDict]:
        """A transaction whose deliberate refusals (a :class:`~kiosk.exc.KioskError` raised inside, such
        as :class:`~kiosk.exc.InvalidTime`) reach the caller as themselves, after the rollback."""
        try:
            with self.transaction() as db:
                yield db
        except StoreError as exc:
            if isinstance(exc.__cause__, KioskError):
                raise exc.__cause__ from None
            raise

    def nudge(self) -> None:
        """Tell a running daemon that entries were queued from outside (``retry``, ``open close``...):
        it looks at this one record every turn of its main loop and wakes its sender."""
        with self.transaction() as db:
            db[NUDGE] = int(db.get(NUDGE, 0)) + 1

    def nudges(self) -> int:
        """How often :meth:`nudge` was called (the daemon compares it between turns)."""
        return int(self._get(NUDGE, 0))

    def _audit(self, db: SqliteDict, kind: str, *, at: str | None = None, **fields: Any) -> int:
        if self.actor and "by" not in fields:
            fields["by"] = self.actor
        return super()._audit(db, kind, at=at, **fields)

    def _audit_many(self, db: SqliteDict, lines: list[dict[str, Any]]) -> None:
        """Append many audit lines in the current transaction, with one id allocation."""
        if not lines:
            return
        first = int(db.get("meta:seq", 0)) + 1
        db["meta:seq"] = first + len(lines) - 1
        now = to_iso(clock.utcnow())
        extra = {"by": self.actor} if self.actor else {}
        db.update({key("audit", first + i): {"id": first + i, "at": now, **extra, **line}
                   for i, line in enumerate(lines)})



class AdminRecords(Changes):
    """Badge lifecycle, import and enrolment; every audit line names :attr:`~Changes.actor` when set."""

    def _badge_in(self, db: SqliteDict, uid: str) -> Badge:
        rec = db.get(key("badge", uid))
        if rec is None:
            raise NotFound(f"no badge {uid} (kiosk badge list shows the mapped ones)")
        return Badge.from_record(rec)

    # ------------------------------------------------------------ reading

    def iter_badges(self) -> Iterator[Badge]:
        """Every mapping in badge id order, a page at a time (constant memory)."""
        return self._typed(Badge, self._walk("badge"))

    def badge_count(self) -> int:
        return self._count("badge")

    # ------------------------------------------------------------ one badge

    def map_badge(self, uid: str, username: str, *, label: str = "", enabled: bool = True,
                  replace: bool = False) -> tuple[Badge, Badge | None]:
        """Map ``uid`` to ``username``: the new mapping and the one it replaced (if any).

        :class:`~kiosk.exc.Conflict` when ``uid`` is mapped already, unless ``replace``.
        The caller cleans the names (:func:`kiosk.text.clean_name`).
        """
        now = clock.utcnow()
        badge = Badge(uid, username, enabled, label, added_at=now, updated_at=now)
        with self._change() as db:
            rec = db.get(key("badge", uid))
            old = Badge.from_record(rec) if rec else None
            if old and not replace:
                raise Conflict(f"badge {uid} is already mapped to {name(old.username)}"
                               f"{' (disabled)' if not old.enabled else ''}: use kiosk badge update, "
                               "or add --replace to map it anew")
            db[key("badge", uid)] = badge.to_record()
            self._audit(db, "badge_add", uid=uid, username=username, label=label, enabled=enabled,
                        replaced=rec, old_username=old.username if old else None)
        return badge, old

    def remove_badge(self, uid: str) -> Badge:
        """Delete the mapping of ``uid`` (its taps stay in the audit log); the removed mapping."""
        with self._change() as db:
            old = self._badge_in(db, uid)
            del db[key("badge", uid)]
            self._audit(db, "badge_remove", uid=uid, username=old.username, copy=old.to_record())
        return old

    def set_badge_enabled(self, uid: str, enabled: bool) -> tuple[Badge, bool]:
        """Enable or disable ``uid``, keeping its label and added time; (badge, whether it changed)."""
        with self._change() as db:
            old = self._badge_in(db, uid)
            if old.enabled == enabled:
                return old, False
            new = old.replace(enabled=enabled, updated_at=clock.utcnow())
            db[key("badge", uid)] = new.to_record()
            self._audit(db, "badge_enable" if enabled else "badge_disable", uid=uid, username=old.username)
        return new, True

    def update_badge(self, uid: str, *, username: str | None = None, label: str | None = None) -> tuple[Badge, Badge]:
        """Change the username and/or label of ``uid``; (before, after). Nothing given: nothing changes."""
        with self._change() as db:
            old = self._badge_in(db, uid)
            new = old.replace(username=old.username if username is None else username,
                              label=old.label if label is None else label)
            changes = _differs(old, new.username, new.label, new.enabled)
            if not changes:
                return old, old
            new = new.replace(updated_at=clock.utcnow())
            db[key("badge", uid)] = new.to_record()
            self._audit(db, "badge_update", uid=uid, username=new.username, old_username=old.username,
                        changes=changes)
        return old, new

    # ------------------------------------------------------------ import

    def import_badges(self, rows, *, prune: bool = False, replace: bool = False, dry_run: bool = False,
                      source: str = "", progress: Callable[[int], None] | None = None) -> ImportSummary:
        """Make the mappings match ``rows`` (:class:`kiosk.badgefile.BadgeRow`), all or nothing.

        A row whose uid is mapped to another username is refused unless ``replace``
        (:class:`~kiosk.exc.InputRefused` listing every such line: nothing changes).
        ``prune`` removes the mappings that ``rows`` do not name. ``dry_run`` checks
        and counts but writes nothing. Importing the same rows again changes nothing.
        ``progress(n)`` is told how many rows were written, now and then.
        """
        rows = list(rows)
        for _ in range(IMPORT_TRIES):
            # Plan outside the write transaction (taps must not wait on it), then apply the plan only
            # if the mappings are still exactly those it was made from.
            snapshot = self._raw_badges()
            # A damaged record is left out (logged): a row of the file for its badge writes it anew.
            existing = {k.split(":", 1)[1]: badge for k, v in snapshot.items()
                        if (badge := Badge.parse(decode(k, v), k)) is not None}
            conflicts = [(r.line, f"badge {r.uid} is mapped to {name(existing[r.uid].username)} in the store, "
                                  f"the file maps it to {name(r.username)}: use --replace to change it")
                         for r in rows if r.uid in existing and existing[r.uid].username != r.username and not replace]
            if conflicts:
                raise InputRefused(f"{len(conflicts)} badge{'s' if len(conflicts) > 1 else ''} in the file "
                                   "mapped to someone else in the store; nothing was changed", conflicts)
            plan = self._import_plan(rows, existing, clock.utcnow(), prune=prune, dry_run=dry_run, source=source)
            if dry_run:
                return plan.summary
            with self._change() as db:
                if self._raw_badges() != snapshot:
                    continue  # changed meanwhile (an enrolment, another command): plan again
                items = list(plan.writes.items())
                for i in range(0, len(items), 1000):
                    db.update(dict(items[i:i + 1000]))
                    if progress is not None:
                        progress(min(i + 1000, len(items)))
                self._delete_many(plan.deletes)
                self._audit_many(db, plan.lines)
                self._audit(db, "badge_import", source=source, **plan.summary.to_record())
            return plan.summary
        raise Conflict("the badge mappings kept changing during the import; nothing was changed: try again")

    def _raw_badges(self) -> dict[str, str]:
        """Every mapping as stored (key -> JSON text): cheap to read and compare whole."""
        with self._lock:
            return dict(self._open().conn.select(
                f'SELECT key, value FROM "{TABLE}" WHERE key >= ? AND key < ? ORDER BY key', ("badge:", "badge;")))

    def _import_plan(self, rows, existing: dict[str, Badge], now: datetime, *, prune: bool, dry_run: bool,
                     source: str) -> _ImportPlan:
        writes: dict[str, dict] = {}
        lines: list[dict[str, Any]] = []
        added = changed = unchanged = 0
        for r in rows:
            old = existing.get(r.uid)
            if old is None:
                added += 1
                writes[key("badge", r.uid)] = Badge(r.uid, r.username, r.enabled, r.label, now, now).to_record()
                lines.append({"kind": "badge_add", "uid": r.uid, "username": r.username, "label": r.label,
                              "enabled": r.enabled, "via": "import", "source": source, "line": r.line})
                continue
            changes = _differs(old, r.username, r.label, r.enabled)
            if not changes:
                unchanged += 1
                continue
            changed += 1
            writes[key("badge", r.uid)] = old.replace(username=r.username, label=r.label, enabled=r.enabled,
                                                      updated_at=now).to_record()
            lines.append({"kind": "badge_update", "uid": r.uid, "username": r.username,
                          "old_username": old.username, "changes": changes, "via": "import",
                          "source": source, "line": r.line})
        named = {r.uid for r in rows}
        gone = [b for uid, b in existing.items() if uid not in named] if prune else []
        for b in gone:
            lines.append({"kind": "badge_remove", "uid": b.uid, "username": b.username, "copy": b.to_record(),
                          "via": "import --prune", "source": source})
        summary = ImportSummary(added, changed, unchanged, len(gone), dry_run)
        return _ImportPlan(summary, writes, [key("badge", b.uid) for b in gone], lines)

    # ------------------------------------------------------------ enrolment by tap

    def request_enrolment(self, username: str, *, label: str = "", timeout: float = 60.0) -> dict:
        """Ask the daemon to map the next unknown badge tapped to ``username``; the request.

        :class:`~kiosk.exc.Conflict` while another (unexpired) request waits.
        """
        now = clock.utcnow()
        with self._change() as db:
            pending = db.get(ENROL_REQUEST)
            if pending and from_iso(pending["expires_at"]) > now:
                raise Conflict(f"an enrolment for {name(pending['username'])} (started by {name(pending.get('by') or '?')}) "
                               f"is waiting for a tap until {pending['expires_at'][11:19]} UTC; try again then")
            stale = to_iso(now - RESULT_KEPT)  # results no command came back for (it was killed)
            self._delete_many([k for k, v in self._page("enrol:result", limit=None)
                               if not isinstance(v, dict) or str(v.get("at") or "") < stale])
            request = {"id": self._next_id(db), "username": username, "label": label, "by": self.actor,
                       "requested_at": to_iso(now), "expires_at": to_iso(now + timedelta(seconds=timeout))}
            db[ENROL_REQUEST] = request
            self._audit(db, "enrol_request", username=username, label=label, request=request["id"],
                        timeout=timeout)
        return request

    def enrolment(self) -> dict | None:
        """The pending enrolment request, if one waits and has not expired."""
        request = self._get(ENROL_REQUEST)
        if request and from_iso(request["expires_at"]) > clock.utcnow():
            return request
        return None

    def enrol(self, uid: str, at: datetime | None = None) -> Badge | None:
        """The daemon, on a tap of unknown badge ``uid``: honour a pending request (one transaction).

        Returns the new mapping, or None when no request is pending (or it expired,
        or ``uid`` got mapped meanwhile): then the tap is an ordinary unknown one.
        """
        self.check_identity()
        now = clock.utcnow()
        with self._change() as db:
            request = db.get(ENROL_REQUEST)
            if not request:
                return None
            if from_iso(request["expires_at"]) <= now:
                del db[ENROL_REQUEST]
                return None
            if db.get(key("badge", uid)) is not None:
                return None
            badge = Badge(uid, request["username"], True, request.get("label", ""), now, now)
            db[key("badge", uid)] = badge.to_record()
            del db[ENROL_REQUEST]
            db[key("enrol:result", request["id"])] = {"uid": uid, "username": badge.username,
                                                      "at": to_iso(now), "request": request["id"]}
            self._audit(db, "enrolled", tap_at=to_iso(at or now), uid=uid, username=badge.username,
                        label=badge.label, request=request["id"], requested_by=request.get("by"))
            self._bump(db, "taps:enrolled")
        return badge

    def enrolment_result(self, request_id: int) -> dict | None:
        """The daemon's answer to request ``request_id``, if it came (a read; :meth:`end_enrolment` collects it)."""
        return self._get(key("enrol:result", request_id))

    def end_enrolment(self, request_id: int, *, cancel: bool) -> dict | None:
        """The command's side: the result of request ``request_id`` (collected: removed), or None.

        With ``cancel`` (the wait timed out or was interrupted), a request still
        pending is withdrawn in the same transaction, so it is either honoured
        (and the result returned) or gone, never both.
        """
        with self._change() as db:
            result = db.get(key("enrol:result", request_id))
            if result is not None:
                del db[key("enrol:result", request_id)]
                return result
            pending = db.get(ENROL_REQUEST)
            if cancel and pending and pending.get("id") == request_id:
                del db[ENROL_REQUEST]
                self._audit(db, "enrol_cancel", username=pending["username"], request=request_id)
        return None
