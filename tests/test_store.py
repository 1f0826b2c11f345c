"""The store on real SQLite files: atomic state changes, durability settings, schema, concurrency."""

import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from kiosk import clock
from kiosk.exc import StoreError
from kiosk.model import Badge, OpenClockIn, Stamp
from kiosk.rules import Rules, TapKind, TapOutcome, decide
from kiosk.store import SCHEMA_VERSION, Store

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "kiosk.sqlite")
    yield s
    s.close()


def tap(store, uid, at, rules=Rules(debounce_seconds=0)):
    badge = store.badge(uid)
    open_ = store.open_clock_in(badge.username) if badge else None
    outcome = decide(uid, badge, open_, None, at, rules)
    return outcome, store.record(outcome, notes="kiosk: test", kiosk="test")


def sessions(store, n, uid="04A1B2C3"):
    """n one-hour sessions of ``uid``, two hours apart; the ids of their queued entries."""
    ids = []
    for h in range(n):
        tap(store, uid, T0 + timedelta(hours=2 * h))
        ids.append(tap(store, uid, T0 + timedelta(hours=2 * h + 1))[1])
    return ids


def raw_rows(path):
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT key, value FROM kiosk").fetchall())


def test_durability_pragmas(store):
    assert store._db.conn.select_one("PRAGMA journal_mode")[0] == "wal"
    assert store._db.conn.select_one("PRAGMA synchronous")[0] == 2  # FULL: fsync on commit


def test_values_are_json_not_pickle(store, tmp_path):
    store.add_badge("04A1B2C3", "anna")
    rows = raw_rows(tmp_path / "kiosk.sqlite")
    assert json.loads(rows["badge:04A1B2C3"])["username"] == "anna"


def test_pickle_payload_is_not_executed(store, tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle ran')",))

    with sqlite3.connect(tmp_path / "kiosk.sqlite") as conn:
        conn.execute("REPLACE INTO kiosk VALUES (?, ?)", ("badge:DEADBEEF", pickle.dumps(Boom())))
    assert store.badge("DEADBEEF") is None  # read as no record: never unpickled, never raised
    assert [b.uid for b in store.badges()] == []


def test_clock_in_then_clock_out_queues_one_complete_entry(store):
    store.add_badge("04A1B2C3", "anna")
    out, entry_id = tap(store, "04A1B2C3", T0)
    assert out.kind is TapKind.CLOCK_IN and entry_id is None
    assert store.open_clock_in("anna") == OpenClockIn("anna", T0, "04A1B2C3")  # a bare datetime: no boottime
    out, entry_id = tap(store, "04A1B2C3", T0 + timedelta(hours=8))
    assert out.kind is TapKind.CLOCK_OUT
    assert store.open_clock_in("anna") is None
    [entry] = store.outbox()
    assert entry.id == entry_id and entry.username == "anna"
    assert entry.start == T0 and entry.end == T0 + timedelta(hours=8)
    assert entry.notes == "kiosk: test" and entry.attempts == 0
    kinds = [a.kind for a in store.audit()]
    assert kinds[:2] == ["clock_out", "clock_in"]


def test_clock_out_is_one_transaction(store, tmp_path):
    """A failure inside the transaction leaves the open clock-in and no entry (rollback)."""
    store.add_badge("04A1B2C3", "anna")
    tap(store, "04A1B2C3", T0)
    bogus = TapOutcome(TapKind.CLOCK_OUT, "04A1B2C3", T0 + timedelta(hours=1), "anna", since=T0 - timedelta(hours=1))
    with pytest.raises(StoreError, match="changed under the tap"):
        store.record(bogus)
    assert store.open_clock_in("anna") is not None and store.outbox() == []
    # and the store still works after the rollback
    assert tap(store, "04A1B2C3", T0 + timedelta(hours=1))[0].kind is TapKind.CLOCK_OUT


def test_entry_with_to_not_after_from_is_refused(store):
    store.add_badge("04A1B2C3", "anna")
    tap(store, "04A1B2C3", T0)
    bad = TapOutcome(TapKind.CLOCK_OUT, "04A1B2C3", T0, "anna", since=T0)
    with pytest.raises(StoreError, match="not after its start"):
        store.record(bad)
    assert store.outbox() == []


def test_stale_clock_in_flagged_and_replaced(store):
    store.add_badge("04A1B2C3", "anna")
    tap(store, "04A1B2C3", T0)
    out, _ = tap(store, "04A1B2C3", T0 + timedelta(hours=20))
    assert out.kind is TapKind.CLOCK_IN and out.stale is not None
    [flag] = store.flagged()
    assert flag.username == "anna" and clock.from_iso(flag.record["since"]) == T0 and "16h" in flag.reason
    assert store.open_clock_in("anna").since == T0 + timedelta(hours=20)
    assert store.outbox() == []  # never closed with an invented time


def test_non_state_outcomes_only_audit(store):
    out, _ = tap(store, "DEADBEEF", T0)
    assert out.kind is TapKind.UNKNOWN
    assert store.open_clock_ins() == [] and store.outbox() == []
    assert store.audit(limit=1)[0].kind == "unknown"


def test_outbox_oldest_first_and_ids_sort_numerically(store):
    for i in range(12):
        store.add_badge(f"0000{i:04X}", f"user{i}")
        tap(store, f"0000{i:04X}", T0)
    for i in range(12):
        tap(store, f"0000{i:04X}", T0 + timedelta(hours=1, minutes=i))
    ids = [e.id for e in store.outbox()]
    assert ids == sorted(ids) and len(ids) == 12
    assert [e.username for e in store.outbox(limit=3)] == ["user0", "user1", "user2"]


def test_deliver_reject_retry_drop(store):
    store.add_badge("04A1B2C3", "anna")
    a, b, c = sessions(store, 3)
    assert store.mark_delivered(a, server_id=77)
    assert store.delivered()[0].server_id == 77 and store.status_value("last_delivery")["id"] == a
    assert store.reject(b, 400, "User not found")
    assert store.rejected()[0].reason == "User not found" and store.rejected_count() == 1
    assert [e.id for e in store.outbox()] == [c]
    assert store.retry_rejected(b)
    assert [e.id for e in store.outbox()] == [b, c] and store.rejected() == []
    dropped = store.drop(c, reason="duplicate by hand")
    assert dropped["id"] == c and [e.id for e in store.outbox()] == [b]
    assert store.audit(limit=1)[0].fields["copy"]["id"] == c  # the audit log keeps a copy
    assert store.drop(999) is None and not store.mark_delivered(999) and not store.retry_rejected(999)


def test_update_entry(store):
    store.add_badge("04A1B2C3", "anna")
    tap(store, "04A1B2C3", T0)
    _, entry_id = tap(store, "04A1B2C3", T0 + timedelta(hours=1))
    assert store.update_entry(entry_id, attempts=2, last_error="HTTP 503").attempts == 2
    assert store.outbox_entry(entry_id).last_error == "HTTP 503"
    assert store.update_entry(12345, attempts=1) is None


def test_badge_mapping_rules(store):
    store.add_badge("04A1B2C3", "anna", label="blue card")
    with pytest.raises(StoreError, match="already mapped to anna"):
        store.add_badge("04A1B2C3", "ben")
    store.add_badge("04A1B2C3", "ben", replace=True, enabled=False)
    assert store.badge("04A1B2C3") == Badge("04A1B2C3", "ben", False, "", store.badge("04A1B2C3").added_at,
                                            store.badge("04A1B2C3").updated_at)
    assert store.badge("FFFFFFFF") is None


def test_schema_version_stored_and_newer_refused(tmp_path):
    path = tmp_path / "kiosk.sqlite"
    Store(path).close()
    assert json.loads(raw_rows(path)["meta:schema"]) == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE kiosk SET value = ? WHERE key = 'meta:schema'", (json.dumps(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer than this kiosk understands"):
        Store(path)


def test_missing_store_for_read_only_commands(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "kiosk.sqlite", create=False)
    with pytest.raises(StoreError, match="no kiosk store"):
        Store(tmp_path / "kiosk.sqlite", create=False)


def test_fix_unsynced_corrects_same_boot_and_flags_other_boot(store):
    store.add_badge("04A1B2C3", "anna")
    store.add_badge("04D5E6F7", "ben")
    unsynced = Stamp(T0, False, 1000.0, "boot-1")
    for uid, user in (("04A1B2C3", "anna"), ("04D5E6F7", "ben")):
        store.record(TapOutcome(TapKind.CLOCK_IN, uid, T0, user), unsynced)
    later = Stamp(T0 + timedelta(hours=1), False, 4600.0, "boot-1")
    store.record(TapOutcome(TapKind.CLOCK_OUT, "04A1B2C3", later.at, "anna", since=T0), later)
    assert store.outbox()[0].start_unsynced["boottime"] == 1000.0 and store.outbox()[0].held
    true_boot_start = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)

    def correct(info):
        if info["boot"] != "boot-1":
            return None
        return true_boot_start + timedelta(seconds=info["boottime"])

    assert store.fix_unsynced(correct) == {"fixed": 2, "flagged": 0}
    [entry] = store.outbox()
    assert entry.start_unsynced is None and not entry.held and entry.clock_corrected
    assert entry.start == true_boot_start + timedelta(seconds=1000)
    assert entry.end == true_boot_start + timedelta(seconds=4600)
    assert store.open_clock_in("ben").since == true_boot_start + timedelta(seconds=1000)
    # a clock-in from a boot that ended before the clock synced cannot be fixed: review
    store.record(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", T0, "anna"), Stamp(T0, False, 5.0, "boot-0"))
    assert store.fix_unsynced(correct) == {"fixed": 0, "flagged": 1}
    assert store.open_clock_in("anna") is None and "true time unknown" in store.flagged()[0].reason


def _add_badges(path, prefix, n):
    with Store(path) as s:
        for i in range(n):
            s.add_badge(f"{prefix}{i:06X}", f"{prefix}-{i}")


def test_two_processes_write_concurrently_without_losing_records(tmp_path):
    path = tmp_path / "kiosk.sqlite"
    Store(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_badges, args=(path, p, 40)) for p in ("AA", "BB")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store(path) as s:
        assert len(s.badges()) == 80
        audit_ids = [a.id for a in s.audit()]
        assert len(audit_ids) == len(set(audit_ids)) == 80  # shared counter: no id handed out twice
        assert s.integrity_check() == "ok"


def test_file_that_is_not_sqlite_refused_cleanly(tmp_path):
    path = tmp_path / "kiosk.sqlite"
    path.write_bytes(b"this is not a database at all")
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store(path)
    assert path.read_bytes() == b"this is not a database at all"  # nothing changed


def test_mark_delivered_many_moves_a_batch_in_one_go(store):
    store.add_badge("04A1B2C3", "anna")
    ids = sessions(store, 5)
    store.reject(ids[1], 400, "bad")
    moved = store.mark_delivered_many([(ids[0], 10), (ids[1], 11), (ids[2], 12), (9999, 13)])
    assert moved == 2  # the rejected one and the unknown one are not in the queue
    assert [e.id for e in store.outbox()] == ids[3:]
    assert {(e.id, e.server_id) for e in store.delivered()} == {(ids[0], 10), (ids[2], 12)}
    assert store.status_value("last_delivery")["server_id"] == 12
    assert store.mark_delivered_many([]) == 0


def test_a_failing_commit_raises_rolls_back_and_never_hangs(store):
    """sqlitedict's own commit() hangs for ever when COMMIT fails (its worker thread dies)."""
    store.add_badge("04A1B2C3", "anna")
    conn = store._db.conn
    conn.select_one("PRAGMA foreign_keys=ON")
    conn.select_one("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.select_one("CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    result = {}

    def write():
        try:
            with store.transaction() as db:
                db["badge:0A0B0C0D"] = {"uid": "0A0B0C0D", "username": "ben"}
                db.conn.select_one("INSERT INTO child VALUES (42)")  # fails only at COMMIT
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            result["error"] = exc

    thread = __import__("threading").Thread(target=write)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "commit hung"
    assert isinstance(result["error"], StoreError) and "FOREIGN KEY" in str(result["error"])
    assert store.badge("0A0B0C0D") is None  # rolled back
    store.add_badge("0A0B0C0D", "ben")  # and the store still works
    assert store.badge("0A0B0C0D").username == "ben"


def test_prune_removes_old_history_only(store, monkeypatch):
    store.add_badge("04A1B2C3", "anna")
    old_now = datetime(2025, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(clock, "utcnow", lambda: old_now)
    for day in range(3):  # old history: audit lines and delivered entries from 2025
        start = old_now + timedelta(days=day)
        store.record(TapOutcome(TapKind.CLOCK_IN, "04A1B2C3", start, "anna"))
        ident = store.record(TapOutcome(TapKind.CLOCK_OUT, "04A1B2C3", start + timedelta(hours=1), "anna", since=start))
        if day < 2:
            store.mark_delivered(ident, day)
    monkeypatch.undo()
    tap(store, "04A1B2C3", T0)  # recent
    assert len(store.delivered()) == 2 and store.outbox_count() == 1
    removed = store.prune(datetime(2026, 1, 1, tzinfo=UTC))
    assert removed == 2 + 6  # two delivered entries, the six audit lines of the old taps
    assert store.delivered() == [] and store.outbox_count() == 1  # an unsent entry is never pruned
    assert [a.kind for a in store.audit()] == ["clock_in", "badge_add"]  # today's
    assert store.prune(datetime(2026, 1, 1, tzinfo=UTC)) == 0


def test_unsynced_clock_out_before_the_synced_clock_in_is_kept_then_corrected(store):
    store.add_badge("04A1B2C3", "anna")
    tap(store, "04A1B2C3", T0)  # synced clock-in
    wrong = Stamp(T0 - timedelta(days=30), False, 50.0, "boot-2")  # fake-hwclock after a reboot
    out = decide("04A1B2C3", store.badge("04A1B2C3"), store.open_clock_in("anna"), None, wrong, Rules())
    entry_id = store.record(out, wrong)
    assert store.outbox_entry(entry_id).end_unsynced == {"boottime": 50.0, "boot": "boot-2"}
    true_end = T0 + timedelta(hours=8)
    assert store.fix_unsynced(lambda info: true_end) == {"fixed": 1, "flagged": 0}
    assert store.outbox_entry(entry_id).end == true_end
    # corrected but still not after the start: flagged, never sent
    tap(store, "04A1B2C3", T0 + timedelta(days=1))
    out = decide("04A1B2C3", store.badge("04A1B2C3"), store.open_clock_in("anna"), None, wrong, Rules())
    second = store.record(out, wrong)
    assert store.fix_unsynced(lambda info: T0) == {"fixed": 0, "flagged": 1}
    assert store.outbox_entry(second) is None and "end before they start" in store.flagged()[-1].reason


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="needs root to own files as another user")
def test_root_gives_new_wal_files_back_to_the_stores_owner(tmp_path):
    import os

    path = tmp_path / "kiosk.sqlite"
    Store(path).close()
    for p in tmp_path.iterdir():
        os.chown(p, 4242, 4242)  # as if the daemon's user made them
    with Store(path) as store:  # root runs an admin command
        store.add_badge("04A1B2C3", "anna")
        owners = {p.name: p.stat().st_uid for p in tmp_path.iterdir()}
    assert owners["kiosk.sqlite-wal"] == 4242 and owners["kiosk.sqlite-shm"] == 4242


def test_a_failing_write_rolls_back_the_whole_transaction(store):
    """sqlitedict does not wait for writes: the failure must still undo the writes before it."""
    with pytest.raises(StoreError):
        with store.transaction() as db:
            db["badge:0A0B0C0D"] = {"uid": "0A0B0C0D", "username": "ben"}
            db.conn.execute("INSERT INTO no_such_table VALUES (1)")  # fails in the worker, later
    assert store.badge("0A0B0C0D") is None
    store.add_badge("0A0B0C0D", "ben")
    assert store.badge("0A0B0C0D").username == "ben"


def test_corrected_entry_longer_than_a_session_is_flagged_not_sent(store):
    """Friday's forgotten clock-out, closed by Monday's tap before the clock synced."""
    store.add_badge("04A1B2C3", "anna")
    friday = datetime(2026, 3, 6, 17, tzinfo=UTC)
    tap(store, "04A1B2C3", friday)
    wrong = Stamp(friday + timedelta(hours=1), False, 30.0, "boot-2")
    out = decide("04A1B2C3", store.badge("04A1B2C3"), store.open_clock_in("anna"), None, wrong, Rules())
    assert out.kind is TapKind.CLOCK_OUT  # nothing told the kiosk yet that it is Monday
    store.record(out, wrong)
    monday = datetime(2026, 3, 9, 8, tzinfo=UTC)
    assert store.fix_unsynced(lambda info: monday, 16 * 3600) == {"fixed": 0, "flagged": 1}
    assert store.outbox() == [] and "forgotten clock-out" in store.flagged()[-1].reason


def _open_and_close(path):
    """Another process reads and closes: if it looks like the last one, SQLite checkpoints and deletes the WAL."""
    conn = sqlite3.connect(path)
    conn.execute("SELECT COUNT(*) FROM kiosk").fetchone()
    conn.close()


def test_a_second_connection_in_the_process_keeps_the_first_ones_locks(tmp_path):
    """Closing any descriptor of the file drops every POSIX lock of the process, SQLite's too:
    then another process's close could checkpoint and delete the WAL under the daemon, and
    the daemon's later commits were lost. A second Store (the sender's) must not do that."""
    path = tmp_path / "kiosk.sqlite"
    daemon_store = Store(path)
    sender_store = Store(path)  # opened while the first holds the file
    try:
        ctx = multiprocessing.get_context("spawn")
        for i in range(4):
            daemon_store.add_badge(f"0000000{i}", "anna")
            other = ctx.Process(target=_open_and_close, args=(path,))
            other.start()
            other.join(60)
            assert other.exitcode == 0
            daemon_store.add_badge(f"1000000{i}", "anna")
            sender_store.set_status(f"sender{i}", {"state": "idle"})
    finally:
        sender_store.close()
        daemon_store.close()
    with sqlite3.connect(path) as conn:  # a fresh reader: the commits are on disk
        keys = {k for (k,) in conn.execute("SELECT key FROM kiosk")}
    for i in range(4):
        assert {f"badge:0000000{i}", f"badge:1000000{i}", f"status:sender{i}"} <= keys
