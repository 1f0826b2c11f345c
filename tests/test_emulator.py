"""The TimeTrack emulator over real HTTP (loopback, no patching of requests)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
import requests
from urllib3.exceptions import ReadTimeoutError

from kiosk.sim.emulator import CODE_DELETED, Emulator, Faults, serve

KEY, SECRET = "test-key", "s3cret-Value-42"
AUTH = {"X-TimeTrack-Api-Key": KEY, "X-TimeTrack-Api-Secret": SECRET}
TIMEOUT = 5
ENTRY = {"username": "tester", "from": "2020-10-17T10:00:00.000Z", "to": "2020-10-17T14:00:00.000Z"}


class Api:
    """Thin requests wrapper: base URL, auth headers and a timeout on every call."""

    def __init__(self, emulator: Emulator, headers: dict | None = None) -> None:
        self.emulator = emulator
        self.headers = dict(AUTH if headers is None else headers)

    def __call__(self, method: str, path: str = "/attendances", **kw) -> requests.Response:
        kw.setdefault("timeout", TIMEOUT)
        kw.setdefault("headers", self.headers)
        return requests.request(method, self.emulator.url + path, **kw)

    def admin(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", TIMEOUT)
        kw.setdefault("headers", self.headers)
        base = self.emulator.url.removesuffix("/api/v2/ext")
        return requests.request(method, base + "/_emulator" + path, **kw)

    def create(self, **fields) -> dict:
        r = self("POST", json={**ENTRY, **fields})
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture
def emu():
    with Emulator(key=KEY, secret=SECRET) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return Api(emu)


def error_of(r: requests.Response, status: int) -> dict:
    """Assert the documented error shape and return its single error."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1
    error = body["errors"][0]
    assert set(error) == {"title", "status", "code", "detail"}
    assert error["status"] == status and isinstance(error["code"], int)
    assert error["title"] and error["detail"]
    return error


# -- operations


def test_create_answers_201_with_the_documented_object(api):
    r = api("POST", json={"username": "tester", "to": "2020-10-17T14:00:00Z", "minutesBreak": 15,
                          "details": "This is a test", "from": "2020-10-17T10:00:00Z"})
    assert r.status_code == 201
    assert r.json() == {
        "ID": 1, "user": "tester", "from": "2020-10-17T10:00:00.000Z", "to": "2020-10-17T14:00:00.000Z",
        "notes": "This is a test", "manual": True, "workedMinutes": 225, "breakMinutes": 15,
        "latitudeStart": None, "longitudeStart": None, "latitudeEnd": None, "longitudeEnd": None,
    }


def test_object_field_names_are_accepted_on_create(api):
    entry = api.create(breakMinutes=30, notes="n", manual=False, latitudeStart=48.2, longitudeStart="16.37",
                       user="tester", ID=99, workedMinutes=1)
    assert entry["ID"] == 1  # assigned, not taken from the body
    assert (entry["breakMinutes"], entry["workedMinutes"], entry["notes"], entry["manual"]) == (30, 210, "n", False)
    assert (entry["latitudeStart"], entry["longitudeStart"]) == (48.2, "16.37")


def test_read_one_and_list(api):
    first, second = api.create(), api.create(username="anna")
    r = api("GET", f"/attendances/{second['ID']}")
    assert r.status_code == 200 and r.json() == second
    r = api("GET")
    assert r.status_code == 200 and r.json() == [first, second]  # a bare array


def test_update_changes_fields_but_never_the_user(api):
    entry = api.create()
    r = api("PUT", f"/attendances/{entry['ID']}",
            json={"notes": "This is one test note", "to": "2020-10-17T23:00:00.000Z", "minutesBreak": 0})
    assert r.status_code == 200
    assert r.json() == {**entry, "notes": "This is one test note", "to": "2020-10-17T23:00:00.000Z",
                        "workedMinutes": 13 * 60, "breakMinutes": 0}
    assert api("GET", f"/attendances/{entry['ID']}").json() == r.json()
    for field in ("username", "user"):
        error = error_of(api("PUT", f"/attendances/{entry['ID']}", json={field: "anna"}), 400)
        assert field in error["detail"]
    error = error_of(api("PUT", f"/attendances/{entry['ID']}", json={"to": "2020-10-17T09:00:00Z"}), 400)
    assert "after" in error["detail"]
    error_of(api("PUT", "/attendances/99", json={"notes": "x"}), 404)


def test_delete_marks_deleted_and_hides_the_entry(api, emu):
    kept, gone = api.create(), api.create(username="anna")
    r = api("DELETE", f"/attendances/{gone['ID']}")
    assert r.status_code == 200 and r.json()["ID"] == gone["ID"]
    assert api("GET").json() == [kept]
    assert api("GET", params={"username": "anna"}).json() == []
    for method in ("GET", "PUT", "DELETE"):
        error = error_of(api(method, f"/attendances/{gone['ID']}", json={"notes": "x"}), 404)
        assert (error["code"], error["title"]) == (CODE_DELETED, "TimeEntry exist but it is deleted")
    assert [(e["ID"], e["deleted"]) for e in emu.entries(include_deleted=True)] == [(1, False), (2, True)]
    assert [e["ID"] for e in emu.entries()] == [1]


def test_unknown_entry_is_404_without_the_deleted_code(api):
    for path in ("/attendances/42", "/attendances/abc"):
        assert error_of(api("GET", path), 404)["code"] != CODE_DELETED


@pytest.mark.parametrize("body, words", [
    ({"from": ENTRY["from"], "to": ENTRY["to"]}, "username"),
    ({"username": "tester", "to": ENTRY["to"]}, "from"),
    ({"username": "tester", "from": ENTRY["from"]}, "to"),
    ({**ENTRY, "to": ENTRY["from"]}, "after"),
    ({**ENTRY, "to": "2020-10-17T09:00:00Z"}, "after"),
    ({**ENTRY, "breakMinute": 5}, "breakMinute"),
    ({**ENTRY, "minutesBreak": 5, "breakMinutes": 10}, "differ"),
    ({**ENTRY, "notes": "a", "details": "b"}, "differ"),
    ({**ENTRY, "minutesBreak": -1}, "minutesBreak"),
    ({**ENTRY, "minutesBreak": 1.5}, "minutesBreak"),
    ({**ENTRY, "minutesBreak": 300}, "longer"),
    ({**ENTRY, "manual": "yes"}, "manual"),
    ({**ENTRY, "latitudeEnd": "north"}, "latitudeEnd"),
    ({**ENTRY, "user": "anna"}, "differ"),
    ([ENTRY], "object"),
    ({}, "username"),
])
def test_create_refuses_bad_bodies(api, emu, body, words):
    assert words in error_of(api("POST", json=body), 400)["detail"]
    assert emu.entries(include_deleted=True) == []


def test_bad_json_and_empty_body_are_400(api):
    assert "JSON" in error_of(api("POST", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"}),
                              400)["detail"]
    error_of(api("POST"), 400)  # the docs' curl examples POST to the list URL


def test_errors_are_always_in_the_documented_shape(api):
    error_of(api("GET", "/users"), 404)
    error_of(api("POST", "/attendances/1", json={}), 405)
    error_of(api("PATCH", "/attendances/1", json={}), 501)
    error_of(api("GET", "/attendances/1", params={"x": "1"}), 400)


# -- timestamps


@pytest.mark.parametrize("value", [
    "2020-10-17T10:00:00", "2020-10-17T10:00:00+00:00", "2020-10-17 10:00:00Z", "2020-10-17T10:00:00.1Z",
    "2020-10-17T10:00:00.000000Z", "2020-13-01T00:00:00Z", "2020-02-30T00:00:00Z", "2020-10-17T10:00:00z", "", 1602928800,
])
def test_malformed_timestamps_are_400_naming_the_field(api, value):
    for field in ("from", "to"):
        detail = error_of(api("POST", json={**ENTRY, field: value}), 400)["detail"]
        assert detail.startswith(f"{field}:")
    if isinstance(value, str):
        assert error_of(api("GET", params={"from": value}), 400)["detail"].startswith("from:")


def test_both_timestamp_forms_are_accepted_and_answered_with_milliseconds(api):
    entry = api.create(**{"from": "2020-10-17T10:00:00Z", "to": "2020-10-17T10:30:00.250Z"})
    assert (entry["from"], entry["to"], entry["workedMinutes"]) == (
        "2020-10-17T10:00:00.000Z", "2020-10-17T10:30:00.250Z", 30)


# -- filters and paging


def test_filter_by_username_or_user_and_time_range(api):
    inside = api.create(**{"from": "2020-10-01T00:00:00Z", "to": "2020-10-01T08:00:00Z"})
    api.create(**{"from": "2020-09-30T23:00:00Z", "to": "2020-10-01T08:00:00Z"})  # starts before
    api.create(**{"from": "2020-10-30T20:00:00Z", "to": "2020-10-31T00:00:01Z"})  # ends after
    edge = api.create(**{"from": "2020-10-30T20:00:00Z", "to": "2020-10-31T00:00:00Z"})
    api.create(username="anna")
    window = {"from": "2020-10-01T00:00:00Z", "to": "2020-10-31T00:00:00.000Z"}
    for name in ("username", "user"):
        assert api("GET", params={name: "tester", **window}).json() == [inside, edge]
    assert [e["user"] for e in api("GET", params={"user": "anna"}).json()] == ["anna"]
    assert api("GET", params={"username": "nobody"}).json() == []
    assert "differ" in error_of(api("GET", params={"username": "a", "user": "b"}), 400)["detail"]
    assert "usr" in error_of(api("GET", params={"usr": "tester"}), 400)["detail"]


def test_paging(api):
    ids = [api.create()["ID"] for _ in range(5)]
    pages = [[e["ID"] for e in api("GET", params={"limit": 2, "page_number": n}).json()] for n in range(4)]
    assert pages == [ids[0:2], ids[2:4], ids[4:5], []]
    assert [e["ID"] for e in api("GET", params={"limit": 1000}).json()] == ids


def test_default_page_is_50(api, emu):
    for _ in range(51):
        emu.attendances.create(dict(ENTRY))  # faster than 51 POSTs; the HTTP path is covered above
    assert len(api("GET").json()) == 50
    assert [e["ID"] for e in api("GET", params={"page_number": 1}).json()] == [51]


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 1001}, {"limit": -1}, {"limit": "abc"}, {"limit": ""}, {"limit": "2.0"},
    {"page_number": -1}, {"page_number": "x"},
])
def test_bad_paging_values_are_400(api, params):
    assert next(iter(params)) in error_of(api("GET", params=params), 400)["detail"]


# -- authentication


@pytest.mark.parametrize("headers, missing", [
    ({}, "X-TimeTrack-Api-Key"),
    ({"X-TimeTrack-Api-Key": KEY}, "X-TimeTrack-Api-Secret"),
    ({"X-TimeTrack-Api-Secret": SECRET}, "X-TimeTrack-Api-Key"),
    ({"X-TimeTrack-Api-Key": KEY, "X-TimeTrack-Api-Secret": "wrong"}, "X-TimeTrack-Api-Secret"),
    ({"X-TimeTrack-Api-Key": "wrong", "X-TimeTrack-Api-Secret": SECRET}, "X-TimeTrack-Api-Key"),
])
def test_missing_or_wrong_credentials_are_401(api, emu, headers, missing):
    for method, path in (("GET", "/attendances"), ("POST", "/attendances"), ("GET", "/attendances/1")):
        r = api(method, path, headers=headers, json=ENTRY)
        assert missing in error_of(r, 401)["detail"]
    assert error_of(Api(emu, headers).admin("GET", "/stats"), 401)
    assert emu.entries() == []


def test_secret_rotation(api, emu):
    api.create()
    emu.set_credentials(KEY, "rotated")
    error_of(api("GET"), 401)
    api.headers["X-TimeTrack-Api-Secret"] = "rotated"
    assert len(api("GET").json()) == 1


def test_the_secret_is_never_logged_or_echoed(emu, caplog):
    caplog.set_level(logging.DEBUG, logger="kiosk.sim.emulator")
    api = Api(emu)
    api.create()
    wrong = {**AUTH, "X-TimeTrack-Api-Secret": "wrong-secret-guess"}
    r = api("GET", headers=wrong)
    emu.set_credentials(KEY, "next-secret")
    assert SECRET not in repr(emu)
    for text in (caplog.text, r.text):
        for secret in (SECRET, "wrong-secret-guess", "next-secret"):
            assert secret not in text


# -- users, create variants, callback


def test_known_users_reject_other_usernames():
    with Emulator(key=KEY, secret=SECRET, users=["anna", "ben"]) as emu:
        api = Api(emu)
        assert api.create(username="anna")["user"] == "anna"
        error = error_of(api("POST", json={**ENTRY, "username": "carl"}), 400)
        assert "carl" in error["detail"] and error["title"] == "Unknown user"
        assert [e["user"] for e in emu.entries()] == ["anna"]


def test_create_can_answer_200_and_or_an_empty_body(api, emu):
    emu.set_faults(create_status=200)
    r = api("POST", json=ENTRY)
    assert r.status_code == 200 and r.json()["ID"] == 1
    emu.set_faults(create_body=False)
    r = api("POST", json=ENTRY)
    assert r.status_code == 201 and r.content == b""
    assert len(emu.entries()) == 2


def test_on_create_sees_each_new_entry(api, emu):
    seen = []
    emu.on_create = seen.append
    entry = api.create()
    assert seen == [entry]
    emu.on_create = lambda entry: 1 / 0  # a broken callback never breaks the answer
    assert api.create()["ID"] == 2


# -- persistence


def test_data_file_survives_stop_and_start(tmp_path):
    path = tmp_path / "data.json"
    with Emulator(key=KEY, secret=SECRET, data_path=path) as emulator:
        api = Api(emulator)
        first, second = api.create(), api.create(username="anna")
        api("DELETE", f"/attendances/{second['ID']}")
        before = emulator.entries(include_deleted=True)
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]  # no temp file left behind
    with Emulator(key=KEY, secret=SECRET, data_path=path) as emulator:
        assert emulator.entries(include_deleted=True) == before
        api = Api(emulator)
        assert api("GET").json() == [first]
        assert error_of(api("GET", "/attendances/2"), 404)["code"] == CODE_DELETED
        assert api.create()["ID"] == 3  # ids are never reused


def test_restart_keeps_the_url(tmp_path):
    emulator = Emulator(key=KEY, secret=SECRET, data_path=tmp_path / "d.json").start()
    try:
        url = emulator.url
        Api(emulator).create()
        with requests.Session() as session:
            session.headers.update(AUTH)
            assert session.get(url + "/attendances", timeout=TIMEOUT).status_code == 200
            emulator.stop()  # also ends the session's idle keep-alive connection
            with pytest.raises(requests.ConnectionError):
                session.get(url + "/attendances", timeout=TIMEOUT)
        emulator.start()
        assert emulator.url == url
        assert len(Api(emulator)("GET").json()) == 1
    finally:
        emulator.stop()


def test_a_change_that_cannot_be_stored_is_500_and_changes_nothing(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    with Emulator(key=KEY, secret=SECRET, data_path=folder / "data.json") as emulator:
        api = Api(emulator)
        api.create()
        (folder / "data.json").unlink()
        folder.rmdir()
        assert "store" in error_of(api("POST", json=ENTRY), 500)["detail"]
        assert error_of(api("DELETE", "/attendances/1"), 500)
        assert [e["ID"] for e in emulator.entries()] == [1]
        assert emulator.stats()["creates"] == 1


def test_unreadable_data_file_is_a_clear_error(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"data.json: not an emulator data file \(invalid JSON: "):
        Emulator(key=KEY, secret=SECRET, data_path=path).start()


def _stored(ident=1, **changes) -> dict:
    return {"ID": ident, "user": "anna", "from": "2020-10-17T10:00:00.000Z", "to": "2020-10-17T14:00:00.000Z",
            "notes": "", "manual": True, "breakMinutes": 0, "latitudeStart": None, "longitudeStart": None,
            "latitudeEnd": None, "longitudeEnd": None, "deleted": False, **changes}


def _data(entries, next_id=2, **extra) -> dict:
    return {"format": "kiosk-emulator/1", "next_id": next_id, "entries": entries, **extra}


@pytest.mark.parametrize("content,words", [
    ([], "JSON object"),
    ({"entries": []}, "format"),
    ({"format": "kiosk-emulator/2", "next_id": 1, "entries": []}, "format"),
    (_data({}), "entries: expected a list"),
    (_data([], next_id="2"), "next_id"),
    (_data([1]), r"entries\[0\]: expected an object"),
    (_data([{"ID": 1, "user": "anna"}]), r"entries\[0\]: missing from, to"),
    (_data([_stored(ID="1")]), "ID must be a whole number"),
    (_data([_stored(), _stored()]), "ID 1 appears twice"),
    (_data([_stored(deleted="no")]), "entry 1: deleted"),
    (_data([_stored(**{"from": "yesterday"})]), "entry 1: from"),
    (_data([_stored(to="2020-10-17T09:00:00.000Z")]), "entry 1: to .* must be after from"),
    (_data([_stored(breakMinutes=-5)]), "entry 1: breakMinutes"),
    (_data([_stored(user=None)]), "entry 1: user"),
])
def test_a_data_file_of_the_wrong_shape_is_refused_at_start(tmp_path, content, words):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(content))
    emulator = Emulator(key=KEY, secret=SECRET, data_path=path)
    with pytest.raises(ValueError, match=r"data.json: not an emulator data file \(.*" + words):
        emulator.start()
    assert not emulator.running
    assert json.loads(path.read_text()) == content  # left as it was


def test_a_data_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not an emulator data file .not UTF-8"):
        Emulator(key=KEY, secret=SECRET, data_path=path).start()


def test_a_data_path_whose_directory_is_missing_fails_at_start(tmp_path):
    path = tmp_path / "no-such-dir" / "data.json"
    emulator = Emulator(key=KEY, secret=SECRET, data_path=path)
    with pytest.raises(ValueError, match="no-such-dir does not exist"):
        emulator.start()
    assert not emulator.running and not path.parent.exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        Emulator(key=KEY, secret=SECRET, data_path=tmp_path / "file" / "data.json").start()
    with pytest.raises(ValueError, match="it is a directory"):
        Emulator(key=KEY, secret=SECRET, data_path=tmp_path).start()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_data_path_in_a_read_only_directory_fails_at_start(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(ValueError, match="cannot write in"):
            Emulator(key=KEY, secret=SECRET, data_path=folder / "data.json").start()
    finally:
        folder.chmod(0o700)


def test_serve_fails_at_start_on_a_bad_data_path_without_serving(tmp_path):
    """What `kiosk emulator --data` runs: a ValueError before the start line, signal handlers restored."""
    lines = []
    handler = signal.getsignal(signal.SIGTERM)
    stop = threading.Timer(TIMEOUT, os.kill, (os.getpid(), signal.SIGTERM))  # if it serves after all
    stop.start()
    try:
        with pytest.raises(ValueError, match="does not exist"):
            serve("127.0.0.1", 0, key=KEY, secret=SECRET, data_path=tmp_path / "gone" / "d.json", echo=lines.append)
    finally:
        stop.cancel()
    assert lines == [] and signal.getsignal(signal.SIGTERM) == handler


def test_data_file_keeps_id_order_updates_and_resets(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(_data([_stored(7), _stored(3, user="ben")], next_id=5)))
    with Emulator(key=KEY, secret=SECRET, data_path=path) as emulator:
        api = Api(emulator)
        assert [e["ID"] for e in api("GET").json()] == [3, 7]
        assert api.create()["ID"] == 8  # above every ID, whatever next_id said
        assert api("PUT", "/attendances/3", json={"notes": "fixed"}).status_code == 200
        api("DELETE", "/attendances/7")
        before = emulator.entries(include_deleted=True)
        data = json.loads(path.read_text())
        assert data["next_id"] == 9 and [r["ID"] for r in data["entries"]] == [3, 7, 8]
        assert len(path.read_text().splitlines()) == 5  # one line per entry, between two lines
    with Emulator(key=KEY, secret=SECRET, data_path=path) as emulator:
        assert emulator.entries(include_deleted=True) == before
        assert [(e["ID"], e["notes"], e["deleted"]) for e in before] == [(3, "fixed", False), (7, "", True),
                                                                         (8, "", False)]
        emulator.reset()
        assert json.loads(path.read_text()) == _data([], next_id=1)
    with Emulator(key=KEY, secret=SECRET, data_path=path) as emulator:
        assert emulator.entries(include_deleted=True) == [] and Api(emulator).create()["ID"] == 1


def test_filters_and_paging_over_many_entries(api, emu):
    for day in range(1, 31):
        for user in ("anna", "ben"):
            api.create(username=user, **{"from": f"2020-11-{day:02d}T08:00:00Z", "to": f"2020-11-{day:02d}T16:30:00Z"})
    params = {"username": "ben", "from": "2020-11-10T00:00:00Z", "to": "2020-11-20T00:00:00Z", "limit": 4}
    pages = [api("GET", params={**params, "page_number": n}).json() for n in range(4)]
    assert [len(p) for p in pages] == [4, 4, 2, 0]
    rows = [r for p in pages for r in p]
    assert [r["from"][:10] for r in rows] == [f"2020-11-{d:02d}" for d in range(10, 20)]
    assert {r["user"] for r in rows} == {"ben"} and all(r["workedMinutes"] == 510 for r in rows)
    assert [r["ID"] for r in rows] == sorted(r["ID"] for r in rows)
    api("DELETE", f"/attendances/{rows[0]['ID']}")
    assert api("GET", params={**params, "limit": 1}).json() == [rows[1]]


def _spawn(path, port=0):
    code = ("import os; from kiosk.sim.emulator import serve; "  # the secret via the environment, not argv
            f"serve('127.0.0.1', {port}, key={KEY!r}, secret=os.environ['TEST_SECRET'], data_path={str(path)!r})")
    proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd(), "TEST_SECRET": SECRET})
    watchdog = threading.Timer(TIMEOUT, proc.kill)  # never hang the suite on a silent child
    watchdog.start()
    try:
        line = proc.stdout.readline()
    finally:
        watchdog.cancel()
    assert "/api/v2/ext" in line, line
    return proc, line.split()[3]


def test_acknowledged_entries_survive_sigkill_and_serve_stops_on_sigterm(tmp_path):
    path = tmp_path / "data.json"
    proc, url = _spawn(path)
    try:
        for n in range(5):
            r = requests.post(url + "/attendances", headers=AUTH, json=ENTRY, timeout=TIMEOUT)
            assert r.status_code == 201
        assert proc.stdout.readline().startswith("created #1 tester")
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
    port = int(url.split(":")[2].split("/")[0])
    proc, url = _spawn(path, port)
    try:
        r = requests.get(url + "/attendances", headers=AUTH, timeout=TIMEOUT)
        assert [e["ID"] for e in r.json()] == [1, 2, 3, 4, 5]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0 and out.endswith("emulator stopped\n")
        assert SECRET not in url + out
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


# -- faults


def test_error_rate_answers_5xx_and_stores_nothing():
    with Emulator(key=KEY, secret=SECRET, faults={"error_rate": 1}) as emu:  # set at start
        for _ in range(3):
            r = Api(emu)("POST", json=ENTRY)
            assert error_of(r, r.status_code)["status"] in (500, 502, 503)
        assert emu.entries() == []


def test_rate_limit_carries_retry_after(api, emu):
    emu.set_faults(rate_limit=1, retry_after=7)
    r = api("GET")
    error_of(r, 429)
    assert r.headers["Retry-After"] == "7"


def test_unauthorized_fault_spares_the_admin_endpoints(api, emu):
    emu.set_faults(unauthorized=True)
    assert "fault" in error_of(api("GET"), 401)["detail"]
    assert api.admin("PUT", "/faults", json={}).status_code == 200
    assert api("GET").status_code == 200


def test_drop_before_store_closes_without_storing(api, emu):
    emu.set_faults(drop_before_store=1)
    with pytest.raises(requests.ConnectionError):
        api("POST", json=ENTRY)
    assert emu.entries() == []
    assert emu.stats()["by_status"] == {"dropped": 1}


def test_drop_after_store_is_the_ambiguous_failure(api, emu):
    emu.set_faults(drop_after_store=1)
    with pytest.raises(requests.ConnectionError):
        api("POST", json=ENTRY)
    # The client saw a failure, yet the entry exists: the filtered list finds it.
    found = api("GET", params={"username": "tester", "from": ENTRY["from"], "to": ENTRY["to"]}).json()
    assert [(e["from"], e["to"]) for e in found] == [(ENTRY["from"], ENTRY["to"])]


def test_drop_keeps_keep_alive_clients_working(api, emu):
    emu.set_faults(drop_after_store=1, max_faults=1)
    with requests.Session() as session:
        session.headers.update(AUTH)
        assert session.get(emu.url + "/attendances", timeout=TIMEOUT).status_code == 200
        with pytest.raises(requests.ConnectionError):
            session.post(emu.url + "/attendances", json=ENTRY, timeout=TIMEOUT)
        assert len(session.get(emu.url + "/attendances", timeout=TIMEOUT).json()) == 1


def test_slow_body_fires_the_client_read_timeout_after_storing(api, emu):
    emu.set_faults(slow_body=2.0)
    with pytest.raises(requests.ConnectionError) as caught:
        api("POST", json=ENTRY, timeout=(TIMEOUT, 0.05))
    # Headers arrived in time, the body did not: requests reports a read timeout
    # during the body as ConnectionError(ReadTimeoutError), not as ReadTimeout.
    assert isinstance(caught.value.args[0], ReadTimeoutError)
    assert len(emu.entries()) == 1


def test_latency_before_the_headers_is_a_read_timeout(api, emu):
    emu.set_faults(latency=2.0)
    with pytest.raises(requests.ReadTimeout):
        api("GET", timeout=(TIMEOUT, 0.05))
    emu.set_faults(latency=0.01)
    assert api("GET").status_code == 200


def test_max_faults_budget(api, emu):
    emu.set_faults(error_rate=1, max_faults=2)
    assert [api("GET").status_code >= 500 for _ in range(3)] == [True, True, False]
    assert emu.stats()["faults_remaining"] == 0


def test_seed_makes_faults_reproducible(api, emu):
    def run():
        emu.set_faults(error_rate=0.5, seed=7)
        return [api("GET").status_code for _ in range(12)]

    first = run()
    assert first == run()
    assert 200 in first and any(s >= 500 for s in first)


def test_faults_switch_through_the_admin_endpoint(api, emu):
    r = api.admin("PUT", "/faults", json={"rate_limit": 1, "retry_after": 3})
    assert r.status_code == 200 and r.json()["rate_limit"] == 1
    assert api.admin("GET", "/faults").json() == {**Faults().to_dict(), "rate_limit": 1.0, "retry_after": 3}
    assert api("GET").status_code == 429
    assert api.admin("PUT", "/faults", json={}).json() == Faults().to_dict()
    assert api("GET").status_code == 200
    assert "nonsense" in error_of(api.admin("PUT", "/faults", json={"nonsense": 1}), 400)["detail"]
    assert "error_rate" in error_of(api.admin("PUT", "/faults", json={"error_rate": 2}), 400)["detail"]
    assert "error_rate" in error_of(api.admin("PUT", "/faults", json={"error_rate": "1"}), 400)["detail"]


def test_stats_and_reset(api, emu):
    api.create()
    api("GET")
    api("GET", "/attendances/9")
    emu.set_faults(drop_after_store=1)
    with pytest.raises(requests.ConnectionError):
        api("POST", json=ENTRY)
    stats = api.admin("GET", "/stats").json()
    assert stats == {
        "requests": 4, "by_method": {"POST": 2, "GET": 2}, "by_status": {"201": 1, "200": 1, "404": 1, "dropped": 1},
        "creates": 2, "faults": {"drop_after_store": 1}, "faults_remaining": None,
    }
    assert [e["ID"] for e in api.admin("GET", "/entries").json()] == [1, 2]
    assert api.admin("POST", "/reset").status_code == 204
    assert emu.entries() == [] and emu.stats()["requests"] == 0
    assert emu.faults().drop_after_store == 1  # faults stay as set


def test_a_request_is_counted_before_its_client_sees_the_answer(api, emu):
    emu.set_faults(drop_before_store=0.5, seed=1)
    for n in range(1, 21):
        try:
            api("GET")
        except requests.ConnectionError:
            pass
        assert emu.stats()["requests"] == n


def test_faults_parse_command_line_values():
    faults = Faults.parse(["error_rate=0.25", "unauthorized=yes", "retry_after=5", "seed=none", "latency=1"])
    assert (faults.error_rate, faults.unauthorized, faults.retry_after, faults.seed, faults.latency) == (
        0.25, True, 5, None, 1.0)
    assert faults.active() == {"error_rate": 0.25, "unauthorized": True, "retry_after": 5, "latency": 1.0}
    for bad, words in (("error_rate", "name=value"), ("bogus=1", "unknown fault"), ("error_rate=x", "number"),
                       ("error_rate=1.5", "probability"), ("unauthorized=maybe", "true or false"),
                       ("create_status=204", "200 or 201"), ("latency=inf", "number")):
        with pytest.raises(ValueError, match=words):
            Faults.parse([bad])
