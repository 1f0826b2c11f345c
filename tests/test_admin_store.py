"""The store's sysadmin rooms on real SQLite files: badge lifecycle, import, enrolment, review, audit, backups."""

import inspect
import io
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from kiosk import badgefile, clock
from kiosk.exc import Conflict, InputRefused, InvalidTime, NotFound, StoreCorrupt, StoreMissing, StoreTooNew
from kiosk.rules import TapKind, TapOutcome
from kiosk.store import EmptyStore, Store, presence
from kiosk.store.backup import inspect_backup, restore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "kiosk.sqlite")
    s.actor = "admin"
    yield s
    s.close()


def rows(text):
    return badgefile.read_csv(io.StringIO(text))


def audit_kinds(store, **filters):
    return [line.kind for line in store.audit_lines(limit=None, **filters)]


# ---------------------------------------------------------------- badge lifecycle


def test_lifecycle_keeps_label_and_added_time_and_audits_who(store):
    new, old = store.map_badge("04A1B2C3", "anna", label="blue")
    assert old is None
    b, changed = store.set_badge_enabled("04A1B2C3", False)
    assert changed and not b.enabled and b.label == "blue" and b.added_at == new.added_at
    assert store.set_badge_enabled("04A1B2C3", False) == (b, False)  # idempotent, no second audit line
    _, after = store.update_badge("04A1B2C3", username="anna.berg")
    assert (after.username, after.label, after.enabled, after.added_at) == ("anna.berg", "blue", False, new.added_at)
    assert store.remove_badge("04A1B2C3").username == "anna.berg"
    assert store.badge("04A1B2C3") is None
    lines = list(store.audit_lines(limit=None))
    assert [line.kind for line in lines] == ["badge_remove", "badge_update", "badge_disable", "badge_add"]
    assert all(line.fields["by"] == "admin" for line in lines)
    assert lines[1].fields["changes"] == {"username": ["anna", "anna.berg"]}
    assert lines[0].fields["copy"]["label"] == "blue"


def test_map_refuses_a_taken_badge_unless_replace_and_says_what_it_replaced(store):
    store.map_badge("04A1B2C3", "anna", label="x")
    with pytest.raises(Conflict, match="already mapped to anna"):
        store.map_badge("04A1B2C3", "ben")
    assert store.badge("04A1B2C3").username == "anna"
    new, old = store.map_badge("04A1B2C3", "ben", replace=True)
    assert (old.username, old.label, new.username) == ("anna", "x", "ben")


@pytest.mark.parametrize("call", [lambda s: s.remove_badge("DEADBEEF"), lambda s: s.set_badge_enabled("DEADBEEF", True),
                                  lambda s: s.update_badge("DEADBEEF", username="x")])
def test_changes_to_a_missing_badge_are_not_found_and_change_nothing(store, call):
    with pytest.raises(NotFound, match="no badge DEADBEEF"):
        call(store)
    assert store.audit_count() == 0


# ---------------------------------------------------------------- import


def test_import_is_idempotent_counts_and_prunes(store):
    store.map_badge("04A1B2C3", "anna", label="old")
    store.map_badge("04D5E6F7", "ben")
    store.map_badge("0A0B0C0D", "zed")
    text = "uid,username,label,enabled\n04:a1:b2:c3,anna,new,true\n04D5E6F7,ben,,false\nCAFEBABE,carla,,yes\n"
    dry = store.import_badges(rows(text), prune=True, dry_run=True)
    assert dry.to_record() == {"added": 1, "changed": 2, "unchanged": 0, "removed": 1, "dry_run": True}
    assert store.badge("CAFEBABE") is None and store.badge("0A0B0C0D") is not None  # a dry run writes nothing
    done = store.import_badges(rows(text), prune=True)
    assert done.to_record() == {"added": 1, "changed": 2, "unchanged": 0, "removed": 1, "dry_run": False}
    assert store.badge("04A1B2C3").label == "new" and not store.badge("04D5E6F7").enabled
    assert store.badge("0A0B0C0D") is None
    again = store.import_badges(rows(text), prune=True)
    assert again.to_record() == {"added": 0, "changed": 0, "unchanged": 3, "removed": 0, "dry_run": False}
    assert audit_kinds(store, badge="0A0B0C0D")[0] == "badge_remove"


def test_import_writes_a_damaged_mapping_anew(store):
    """A badge record that is not JSON (a damaged or tampered file) does not stop the import: the file's
    row for that badge replaces it, and the other rows go in as usual."""
    store.map_badge("04A1B2C3", "anna")
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE kiosk SET value = ? WHERE key = ?", (b"\x80\x04not json", "badge:04A1B2C3"))
    done = store.import_badges(rows("uid,username\n04A1B2C3,anna\nCAFEBABE,carla\n"))
    assert (done.added, done.changed) == (2, 0)
    assert store.badge("04A1B2C3").username == "anna" and store.badge("CAFEBABE").username == "carla"


def test_import_conflicts_are_refused_with_lines_unless_replace(store):
    store.map_badge("04A1B2C3", "anna")
    text = "uid,username\nCAFEBABE,carla\n04A1B2C3,ben\n"
    with pytest.raises(InputRefused) as info:
        store.import_badges(rows(text))
    assert info.value.errors == [(3, "badge 04A1B2C3 is mapped to anna in the store, the file maps it to ben: "
                                     "use --replace to change it")]
    assert store.badge("CAFEBABE") is None and store.badge("04A1B2C3").username == "anna"  # all or nothing
    assert store.import_badges(rows(text), replace=True).changed == 1


@pytest.mark.parametrize("text, line, reason", [
    ("uid,username\n04A1B2C3,anna\n04:A1:B2:C3,ben\n", 3, "already on line 2"),
    ("uid,username\nzz,anna\n", 2, "not hex or decimal"),
    ("uid,username\n04A1B2C3,an\u200bna\n", 2, "U+200B ZERO WIDTH SPACE"),
    ("uid,username\n04A1B2C3,anna \n", 2, "trailing spaces"),
    ("uid,username\n04A1B2C3," + "a" * 101 + "\n", 2, "at most 100"),
    ("uid,username,enabled\n04A1B2C3,anna,maybe\n", 2, "enabled must be true or false"),
    ("uid,username\n04A1B2C3,anna,extra\n", 2, "3 fields, the header has 2"),
    ("uid,user\n04A1B2C3,anna\n", 1, "unknown column user"),
    ("username,label\nanna,x\n", 1, "missing column uid"),
    ("", 1, "empty file"),
    ('uid,username\n"04A1B2C3,anna\n', 2, "not valid CSV"),
])
def test_bad_files_name_the_line_and_the_reason(text, line, reason):
    with pytest.raises(InputRefused) as info:
        rows(text)
    assert info.value.errors[0][0] == line and reason in info.value.errors[0][1], info.value.errors


def test_every_bad_line_is_reported_not_just_the_first():
    text = "uid,username\n04A1B2C3,anna\nzz,ben\nCAFEBABE,\n04A1B2C3,carla\n"
    with pytest.raises(InputRefused) as info:
        rows(text)
    assert [line for line, _ in info.value.errors] == [3, 4, 5]


def test_export_reads_back_as_the_same_mappings(store, tmp_path):
    store.map_badge("04A1B2C3", "anna", label='comma, "quote"')
    store.map_badge("04D5E6F7", "ben", enabled=False)
    out = io.StringIO()
    assert badgefile.write_csv(store.iter_badges(), out) == 2
    back = rows(out.getvalue())
    assert [(r.uid, r.username, r.label, r.enabled) for r in back] == [
        ("04A1B2C3", "anna", 'comma, "quote"', True), ("04D5E6F7", "ben", "", False)]
    assert store.import_badges(back).unchanged == 2
    js = io.StringIO()
    badgefile.write_json(store.iter_badges(), js)
    assert [r["username"] for r in json.loads(js.getvalue())] == ["anna", "ben"]


# ---------------------------------------------------------------- enrolment


def test_enrolment_maps_the_next_unknown_badge_once(store):
    request = store.request_enrolment("anna", label="spare", timeout=60)
    with pytest.raises(Conflict, match="enrolment for anna"):
        store.request_enrolment("ben")
    store.map_badge("04D5E6F7", "ben")
    assert store.enrol("04D5E6F7") is None  # a known badge is never taken over
    badge = store.enrol("04A1B2C3", T0)
    assert (badge.uid, badge.username, badge.label, badge.enabled) == ("04A1B2C3", "anna", "spare", True)
    assert store.enrol("0A0B0C0D") is None  # the request is used up
    assert store.end_enrolment(request["id"], cancel=True)["uid"] == "04A1B2C3"
    assert store.end_enrolment(request["id"], cancel=True) is None  # collected
    [line] = store.audit_lines(kinds=("enrolled",))
    assert line.fields["requested_by"] == "admin" and line.fields["tap_at"].startswith("2026-03-02T08:00")


def test_cancelled_or_expired_enrolment_leaves_no_request(store):
    request = store.request_enrolment("anna", timeout=60)
    assert store.end_enrolment(request["id"], cancel=True) is None
    assert store.enrolment() is None and store.enrol("04A1B2C3") is None and store.badge("04A1B2C3") is None
    store.request_enrolment("ben", timeout=0.01)
    import time
    time.sleep(0.02)
    assert store.enrolment() is None and store.enrol("04A1B2C3") is None  # expired by itself
    store.request_enrolment("carla", timeout=60)  # an expired request does not block a new one


# ---------------------------------------------------------------- open clock-ins and flagged


def clock_in(store, user="anna", uid="04A1B2C3", at=None):
    at = at or clock.utcnow() - timedelta(hours=3)
    store.record(TapOutcome(TapKind.CLOCK_IN, uid, at, user))
    return at


def test_close_open_checks_the_time_and_queues_the_entry(store):
    since = clock_in(store)
    now = clock.utcnow()
    with pytest.raises(InvalidTime, match="in the future"):
        store.close_open("anna", now + timedelta(minutes=5))
    with pytest.raises(InvalidTime, match="not after the start"):
        store.close_open("anna", since)
    with pytest.raises(Conflict, match="changed meanwhile"):
        store.close_open("anna", now, expect_since=since - timedelta(seconds=1))
    assert store.open_clock_in("anna") is not None and store.outbox_count() == 0  # refusals changed nothing
    entry = store.close_open("anna", now - timedelta(hours=1), notes="kiosk: test", expect_since=since)
    assert (entry.start, entry.end) == (since, now - timedelta(hours=1)) and store.open_clock_in("anna") is None
    assert store.outbox_entry(entry.id).notes_log == ["clock-out entered by admin"]
    with pytest.raises(NotFound):
        store.close_open("anna", now)


def test_close_open_refuses_an_untrusted_clock_in(store):
    from kiosk.model import Stamp

    at = clock.utcnow() - timedelta(hours=1)
    store.record(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", at, "anna"), Stamp(at, False, 10.0, "boot"))
    with pytest.raises(Conflict, match="before the clock was trusted"):
        store.close_open("anna", clock.utcnow())


def test_cancel_open_keeps_a_copy(store):
    clock_in(store)
    assert store.cancel_open("anna").username == "anna"
    assert store.open_clock_in("anna") is None
    [line] = store.audit_lines(kinds=("open_cancel",))
    assert line.fields["copy"]["uid"] == "04A1B2C3"


def flag_open(store, user="anna"):
    opened = store.open_clock_in(user)
    stale = TapOutcome(TapKind.CLOCK_IN, opened.uid, clock.utcnow() - timedelta(minutes=1), user, stale=opened)
    store.record(stale)
    return store.flagged()[-1]


def test_flagged_resolve_and_discard(store):
    since = clock_in(store, at=clock.utcnow() - timedelta(hours=20))
    flag = flag_open(store)
    assert store.flagged_times(flag) == (since, None)
    with pytest.raises(InvalidTime):
        store.resolve_flagged(flag.id, end=since - timedelta(minutes=1))
    entry = store.resolve_flagged(flag.id, end=since + timedelta(hours=8))
    assert (entry.id, entry.start, entry.end, entry.username) == (flag.id, since, since + timedelta(hours=8), "anna")
    assert store.flagged_entry(flag.id) is None and store.outbox_entry(flag.id) is not None
    store.cancel_open("anna")
    clock_in(store, at=clock.utcnow() - timedelta(hours=30))
    flag2 = flag_open(store)
    assert store.discard_flagged(flag2.id, reason="holiday").id == flag2.id
    assert store.flagged_count() == 0
    with pytest.raises(NotFound):
        store.discard_flagged(flag2.id)


def test_flagged_entry_with_unknown_start_needs_from(store):
    with store.transaction() as db:
        db["flagged:000000000099"] = {"id": 99, "was": "outbox", "reason": "rebooted", "flagged_at": None,
                                      "record": {"id": 99, "username": "anna", "uid": "04A1B2C3",
                                                 "from": "2026-03-02T08:00:00+00:00", "to": "2026-03-02T16:00:00+00:00",
                                                 "from_unsynced": {"boottime": 1.0, "boot": "x"}}}
    flag = store.flagged_entry(99)
    assert store.flagged_times(flag) == (None, datetime(2026, 3, 2, 16, tzinfo=UTC))
    with pytest.raises(InvalidTime, match="--from"):
        store.resolve_flagged(99, end=datetime(2026, 3, 2, 16, tzinfo=UTC))
    entry = store.resolve_flagged(99, start=T0, end=datetime(2026, 3, 2, 16, tzinfo=UTC))
    assert entry.start == T0 and not entry.held


# ---------------------------------------------------------------- rejected entries


def rejected_entry(store, user="anan"):
    start = clock.utcnow() - timedelta(hours=9)
    store.record(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", start, user))
    entry_id = store.record(TapOutcome(TapKind.CLOCK_OUT, "04A1B2C3", start + timedelta(hours=8), user, since=start))
    store.reject(entry_id, 400, "Unknown user")
    return entry_id


def test_edit_rejected_then_retry_sends_the_new_values(store):
    entry_id = rejected_entry(store)
    old, new = store.edit_rejected(entry_id, username="anna")
    assert (old.username, new.username, new.reason) == ("anan", "anna", "Unknown user")
    with pytest.raises(InvalidTime):
        store.edit_rejected(entry_id, end=new.start)
    assert store.rejected_entry(entry_id).end == new.end  # the refused edit changed nothing
    assert store.retry_rejected(entry_id)
    assert store.outbox_entry(entry_id).username == "anna"
    with pytest.raises(NotFound, match="queued, not rejected"):
        store.edit_rejected(entry_id, username="x")


def test_rejected_of_badge_finds_the_entries_a_fixed_mapping_should_fix(store):
    a = rejected_entry(store)
    rejected_entry(store, user="someone.else")
    assert [e.id for e in store.rejected_of_badge("04A1B2C3", "anan")] == [a]


# ---------------------------------------------------------------- audit log


def test_audit_filters_page_and_order(store):
    base = clock.utcnow() - timedelta(days=10)
    with store.transaction() as db:
        for i in range(600):
            store._audit(db, "clock_in", at=(base + timedelta(hours=i)).isoformat(),
                         username="anna" if i % 3 == 0 else "ben", uid="04A1B2C3" if i % 2 else "04D5E6F7")
    newest = list(store.audit_lines(limit=5))
    assert [line.id for line in newest] == sorted((line.id for line in newest), reverse=True)
    anna = list(store.audit_lines(user="anna", limit=None))
    assert len(anna) == 200 and all(line.fields["username"] == "anna" for line in anna)
    both = list(store.audit_lines(user="anna", badge="04A1B2C3", limit=None))
    assert len(both) == 100
    since, until = base + timedelta(hours=100), base + timedelta(hours=199)
    window = list(store.audit_lines(since=since, until=until, limit=None, newest_first=False))
    assert len(window) == 100 and window[0].at == since and window[-1].at == until
    assert [line.id for line in store.audit_lines(limit=None, newest_first=False)] == sorted(
        line.id for line in store.audit_lines(limit=None))


def test_audit_reads_a_page_at_a_time(store, monkeypatch):
    with store.transaction() as db:
        for i in range(1000):
            store._audit(db, "clock_in", username="anna")
    selects = []
    real = type(store._db.conn).select

    def counting(self, sql, args=None):
        rows = list(real(self, sql, args))
        selects.append(len(rows))
        return iter(rows)

    monkeypatch.setattr(type(store._db.conn), "select", counting)
    assert len(list(store.audit_lines(limit=10))) == 10
    assert max(selects) <= 10
    selects.clear()
    assert len(list(store.audit_lines(limit=None))) == 1000
    assert max(selects) <= 256  # never the whole log at once


def test_pruning_follows_history(store):
    old = (clock.utcnow() - timedelta(days=500)).isoformat()
    with store.transaction() as db:
        store._audit(db, "clock_in", at=old, username="anna")
        store._audit(db, "clock_in", username="anna")
    assert store.prune(clock.utcnow() - timedelta(days=400)) == 1
    assert len(list(store.audit_lines(user="anna"))) == 1


# ---------------------------------------------------------------- the empty store


def test_empty_store_reads_like_an_empty_store(tmp_path):
    missing = StoreMissing("no store")
    empty = EmptyStore(tmp_path / "none.sqlite", missing)
    with Store(tmp_path / "kiosk.sqlite") as real:
        for name, member in inspect.getmembers(EmptyStore, inspect.isfunction):
            if name.startswith("_") or name in ("close",):
                continue
            assert hasattr(real, name), name
            args = {"badge": ("04A1B2C3",), "open_clock_in": ("anna",), "flagged_entry": (1,),
                    "rejected_entry": (1,), "outbox_entry": (1,), "rejected_of_badge": ("04A1B2C3",),
                    "status_value": ("sender",)}.get(name, ())
            mine, theirs = getattr(empty, name)(*args), getattr(real, name)(*args)
            if inspect.isgenerator(theirs) or hasattr(theirs, "__next__"):
                mine, theirs = list(mine), list(theirs)
            if name == "summary":
                assert set(mine) == set(theirs)
                continue
            assert mine == theirs, name
    with pytest.raises(StoreMissing):
        empty.map_badge("04A1B2C3", "anna")


# ---------------------------------------------------------------- backups


def test_backup_is_a_checked_private_copy_and_restore_puts_it_back(store, tmp_path):
    store.map_badge("04A1B2C3", "anna")
    info = store.backup(tmp_path / "b.sqlite")
    assert info["integrity"] == "ok" and info["counts"]["badge"] == 1
    assert oct((tmp_path / "b.sqlite").stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "b.sqlite-wal").exists()
    with pytest.raises(Conflict, match="exists"):
        store.backup(tmp_path / "b.sqlite")
    with pytest.raises(Conflict, match="store"):
        store.backup(store.path)
    store.map_badge("04D5E6F7", "ben")
    path = store.path
    store.close()
    result = restore(tmp_path / "b.sqlite", path)
    assert result["replaced"] and os.path.exists(result["replaced"])
    with Store(path, create=False) as back:
        assert [b.username for b in back.iter_badges()] == ["anna"]
        assert back.audit_lines(limit=1).__next__().kind == "restore"
    with Store(result["replaced"], create=False) as old:
        assert old.badge_count() == 2  # the replaced store is kept whole


def test_restore_refuses_bad_backups_and_changes_nothing(store, tmp_path):
    store.map_badge("04A1B2C3", "anna")
    path = store.path
    store.close()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as conn:
        conn.execute("CREATE TABLE kiosk (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO kiosk VALUES ('meta:schema', '99')")
    for bad, error in ((junk, StoreCorrupt), (other, StoreCorrupt), (newer, StoreTooNew)):
        with pytest.raises(error):
            restore(bad, path)
    assert sorted(p.name for p in tmp_path.iterdir() if "replaced" in p.name) == []
    with Store(path, create=False) as same:
        assert same.badge("04A1B2C3").username == "anna"


def test_restore_refuses_while_a_daemon_holds_the_store(store, tmp_path):
    store.backup(tmp_path / "b.sqlite")
    beat = presence.Heartbeat(store.path)
    beat.claim()
    try:
        state = presence.daemon_state(store.path)
        assert state.running and state.pid == os.getpid()
        with pytest.raises(presence.DaemonRunning, match="stop it first"):
            restore(tmp_path / "b.sqlite", store.path)
    finally:
        beat.release()
    state = presence.daemon_state(store.path)
    assert not state.running and state.last_seen is not None and state.stopped_at is not None


def test_a_second_daemon_cannot_claim_a_held_store(tmp_path):
    first, second = presence.Heartbeat(tmp_path / "kiosk.sqlite"), presence.Heartbeat(tmp_path / "kiosk.sqlite")
    first.claim()
    try:
        with pytest.raises(presence.DaemonRunning, match=f"pid {os.getpid()}"):
            second.claim(timeout=0.1)
    finally:
        first.release()
    second.claim(timeout=0.1)
    second.release()


def test_stale_heartbeat_is_not_running(tmp_path):
    beat = presence.Heartbeat(tmp_path / "kiosk.sqlite")
    beat.claim()
    try:
        later = presence.daemon_state(tmp_path / "kiosk.sqlite", now=os.stat(beat.path).st_mtime + 60)
        assert not later.running and later.alive and later.state == "not responding"
    finally:
        beat.release()


def test_inspect_backup_reports_counts(store, tmp_path):
    clock_in(store)
    store.backup(tmp_path / "b.sqlite")
    assert inspect_backup(tmp_path / "b.sqlite")["counts"]["open"] == 1


def test_a_binary_file_is_decoded_line_by_line_with_bad_bytes_reported():
    data = b"\xef\xbb\xbfuid,username\r\n04A1B2C3,anna\r\n04D5E6F7,b\xe9n\r\n0A0B0C0D,\"multi\nline\"\r\n"
    with pytest.raises(InputRefused) as info:
        badgefile.read_csv(io.BytesIO(data))
    assert info.value.errors[0] == (3, "not UTF-8 text: byte 0xE9 at column 11 (save the file as UTF-8)")
    good = badgefile.read_csv(io.BytesIO(b"\xef\xbb\xbfuid,username\r\n04A1B2C3,anna\r\n"))
    assert [(r.line, r.uid, r.username) for r in good] == [(2, "04A1B2C3", "anna")]
