"""The emulator's field fault modes over real loopback HTTP: a gateway that forwards
then fails, a captive portal, dribbled and oversized answers, headers echoed in
errors, a server clock that is off, and connections accepted at once however
late the answer. The basic faults (error_rate, drops, latency...) are in
test_emulator.py."""

from __future__ import annotations

import doctest
import importlib
import json
import logging
import os
import pkgutil
import re
import select
import socket
import subprocess
import sys
import threading
import time
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import pytest
import requests

import kiosk.sim.emulator as package
from kiosk.sim.emulator import PORTAL_PATH, Emulator, Faults
from tests.test_emulator import AUTH, ENTRY, KEY, SECRET, TIMEOUT, Api, error_of


@pytest.fixture
def emu():
    with Emulator(key=KEY, secret=SECRET) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return Api(emu)


def wait_for(condition, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def lookup(api: Api) -> list[dict]:
    """What a client does after an ambiguous failure: the filtered list for ENTRY."""
    return api("GET", params={"username": "tester", "from": ENTRY["from"], "to": ENTRY["to"]}).json()


def answer_of(emu: Emulator) -> bytes:
    """The JSON body a create of ENTRY (the emulator's only entry) answers with."""
    (entry,) = emu.entries()
    entry.pop("deleted")
    return json.dumps(entry).encode()


# -- a gateway that forwards, then fails

NGINX = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def nginx_page(status: int) -> bytes:
    """nginx's built-in error page (server_tokens off), as nginx/1.25 sends it."""
    title = f"{status} {NGINX[status]}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_error_stores_the_entry_then_answers_like_nginx(api, emu, status):
    emu.set_faults(gateway_error=1, gateway_status=status)
    r = api("POST", json=ENTRY)
    assert (r.status_code, r.reason) == (status, NGINX[status])
    assert r.content == nginx_page(status)
    assert r.headers["Server"] == "nginx" and r.headers["Content-Type"] == "text/html"
    assert r.headers["Content-Length"] == str(len(r.content)) and r.headers["Connection"] == "keep-alive"
    with pytest.raises(ValueError):
        r.json()
    emu.set_faults()  # the gateway is fixed: the lookup finds what the failed POST stored
    assert [(e["from"], e["to"]) for e in lookup(api)] == [(ENTRY["from"], ENTRY["to"])]
    stats = emu.stats()
    assert stats["creates"] == 1 and stats["faults"] == {"gateway_error": 1}
    assert stats["by_status"] == {str(status): 1, "200": 1}


def test_gateway_error_also_follows_updates_deletes_and_reads(api, emu):
    entry = api.create()
    emu.set_faults(gateway_error=1, gateway_status=504)
    assert api("PUT", f"/attendances/{entry['ID']}", json={"notes": "late"}).status_code == 504
    assert emu.entries()[0]["notes"] == "late"  # applied upstream all the same
    assert api("GET").status_code == 504
    assert api("DELETE", f"/attendances/{entry['ID']}").status_code == 504
    assert emu.entries() == [] and len(emu.entries(include_deleted=True)) == 1


def test_gateway_error_is_a_probability_and_every_post_is_stored(api, emu):
    emu.set_faults(gateway_error=0.5, seed=3)  # gateway_status 0: one of 502, 503, 504 each time
    with requests.Session() as session:  # a keep-alive client goes on over the same connection
        session.headers.update(AUTH)
        statuses = [session.post(emu.url + "/attendances", json=ENTRY, timeout=TIMEOUT).status_code
                    for _ in range(40)]
    failed = [s for s in statuses if s != 201]
    assert set(failed) == {502, 503, 504} and 201 in statuses
    assert len(emu.entries()) == 40  # stored whatever the client was told
    assert emu.stats()["faults"] == {"gateway_error": len(failed)}


def test_gateway_down_answers_the_same_page_without_forwarding(api, emu):
    emu.set_faults(gateway_down=1, gateway_status=502, echo_headers=True)
    r = api("POST", json=ENTRY)
    assert r.status_code == 502 and r.headers["Server"] == "nginx"
    assert r.content.startswith(nginx_page(502)[:-len("</body>\r\n</html>\r\n")])
    assert f"X-TimeTrack-Api-Secret: {SECRET}\r\n" in r.text  # a proxy page echoes too
    assert emu.entries() == [] and emu.stats()["creates"] == 0
    assert emu.stats()["faults"] == {"gateway_down": 1, "echo_headers": 1}


def test_gateway_error_spends_the_budget(api, emu):
    emu.set_faults(gateway_error=1, max_faults=2)
    assert [api("POST", json=ENTRY).status_code >= 500 for _ in range(3)] == [True, True, False]
    assert len(emu.entries()) == 3


# -- a captive portal or a web front end


def test_captive_portal_page_answers_200_html_to_everything_and_stores_nothing(api, emu):
    emu.set_faults(captive_portal="page")
    requests_ = [api("POST", json=ENTRY), api("GET"), api("GET", "/attendances/1"),
                 api("DELETE", "/attendances/1"), Api(emu, headers={})("POST", json=ENTRY)]  # no credentials
    for r in requests_:
        assert (r.status_code, r.reason) == (200, "OK")
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert r.text.startswith("<!DOCTYPE html>") and "<form" in r.text and "Sign in" in r.text
        with pytest.raises(ValueError):
            r.json()
    assert emu.entries(include_deleted=True) == []
    stats = emu.stats()
    assert stats["creates"] == 0 and stats["by_status"] == {"200": 5}
    assert stats["faults"] == {"captive_portal": 5}


def test_captive_portal_redirects_to_its_login_page(api, emu):
    emu.set_faults(captive_portal="redirect")
    base = emu.url.removesuffix("/api/v2/ext")
    r = api("POST", json=ENTRY, allow_redirects=False)
    assert (r.status_code, r.reason) == (302, "Found")
    login = r.headers["Location"]
    assert login == f"{base}{PORTAL_PATH}?continue={quote(emu.url + '/attendances', safe='')}"
    followed = api("POST", json=ENTRY)  # requests follows, turning the POST into a GET, as browsers do
    assert [h.status_code for h in followed.history] == [302]
    assert followed.status_code == 200 and followed.url == login
    assert followed.headers["Content-Type"].startswith("text/html") and "<form" in followed.text
    assert emu.entries() == [] and emu.stats()["faults"] == {"captive_portal": 2}


def test_captive_portal_511_links_to_the_login_page(api, emu):
    emu.set_faults(captive_portal="511")
    r = api("POST", json=ENTRY)
    assert (r.status_code, r.reason) == (511, "Network Authentication Required")
    assert r.headers["Content-Type"] == "text/html"
    assert re.search(r'<meta http-equiv="refresh" content="0; url=http://[^"]+/_portal/login\?continue=', r.text)
    assert emu.entries() == []


def test_captive_portal_clears_by_itself_after_the_budget(api, emu):
    emu.set_faults(captive_portal="page", max_faults=2)
    assert [api("POST", json=ENTRY).status_code for _ in range(3)] == [200, 200, 201]
    assert len(emu.entries()) == 1


# -- dribbled answers


def test_dribble_body_keeps_a_per_read_timeout_from_ever_firing(api, emu):
    pause, read_timeout, wanted = 0.02, 0.5, 60
    emu.set_faults(dribble_body=pause)
    started = time.monotonic()
    with api("POST", json=ENTRY, stream=True, timeout=(TIMEOUT, read_timeout)) as r:
        assert r.status_code == 201  # the head came at once; the entry is stored
        got = b""
        while len(got) < wanted:
            got += r.raw.read(1)
        length = int(r.headers["Content-Length"])
    elapsed = time.monotonic() - started
    # Each byte waited for: the request took longer than the read timeout, which never fired.
    assert elapsed >= wanted * pause > read_timeout
    body = answer_of(emu)
    assert got == body[:wanted] and length == len(body)
    assert emu.stats()["faults"] == {"dribble_body": 1}


def test_dribble_head_sends_the_status_line_and_headers_byte_by_byte(api, emu):
    pause = 0.01
    emu.set_faults(dribble_head=pause)
    started = time.monotonic()
    r = api("GET", timeout=(TIMEOUT, 0.5))
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and r.json() == []
    head = len("HTTP/1.1 200 OK\r\n") + sum(len(f"{k}: {v}\r\n") for k, v in r.headers.items()) + 2
    assert elapsed >= head * pause > 0.5  # far beyond the read timeout, which never fired

    emu.set_faults(dribble_head=0.3)
    with socket.create_connection(("127.0.0.1", emu.port), timeout=TIMEOUT) as sock:
        sock.sendall(raw_get(emu))
        assert sock.recv(100) == b"H"  # one byte, not the status line
    assert emu.stats()["faults"] == {"dribble_head": 2}


def test_stop_cuts_a_dribbling_answer(api, emu):
    emu.set_faults(dribble_body=30)
    failures = []

    def client():
        try:
            api("POST", json=ENTRY, timeout=(TIMEOUT, 60))
        except requests.RequestException as e:
            failures.append(e)

    thread = threading.Thread(target=client)
    thread.start()
    assert wait_for(lambda: emu.stats()["faults"].get("dribble_body") == 1)
    emu.stop()
    thread.join(TIMEOUT)
    assert not thread.is_alive() and len(failures) == 1


def raw_get(emu: Emulator, path: str = "/api/v2/ext/attendances") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{emu.port}", *(f"{k}: {v}" for k, v in AUTH.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- oversized bodies


@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_pads_successes_and_errors_with_whitespace(api, emu, chunked):
    size = 3_000_000
    emu.set_faults(oversize=size, oversize_chunked=chunked)
    r = api("POST", json=ENTRY)
    assert r.status_code == 201 and len(r.content) == size
    assert r.content.startswith(answer_of(emu)) and not r.content[len(answer_of(emu)):].strip()
    assert r.json()["ID"] == 1  # still valid JSON, with the same meaning
    if chunked:
        assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
    else:
        assert r.headers["Content-Length"] == str(size)
    emu.set_faults(oversize=size, oversize_chunked=chunked, error_rate=1)
    r = api("POST", json=ENTRY)
    assert len(r.content) == size
    assert error_of(r, r.status_code)["status"] >= 500
    emu.set_faults(oversize=size, gateway_error=1, gateway_status=502)
    r = api("GET")
    assert r.status_code == 502 and len(r.content) == size and r.content.startswith(nginx_page(502)[:40])
    assert len(emu.entries()) == 1
    assert emu.stats()["faults"]["oversize"] == 3


def test_a_300_mb_body_is_never_held_by_the_emulator():
    size = 300_000_000
    proc, url = spawn_cli("--fault", f"oversize={size}", "--fault", "oversize_chunked=true")
    try:
        total = 0
        with requests.get(url + "/attendances", headers=AUTH, stream=True, timeout=(TIMEOUT, 30)) as r:
            assert r.status_code == 200 and r.headers["Transfer-Encoding"] == "chunked"
            for chunk in r.iter_content(1 << 20):
                total += len(chunk)
        assert total == size
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", open(f"/proc/{proc.pid}/status").read()).group(1)) * 1024
        assert peak < size // 3, f"the emulator's peak RSS was {peak} bytes"
    finally:
        proc.terminate()
        proc.communicate(timeout=TIMEOUT)


# -- headers echoed in errors


def test_echo_headers_puts_the_credentials_in_error_bodies(api, emu, caplog):
    caplog.set_level(logging.DEBUG, logger="kiosk.sim.emulator")
    emu.set_faults(echo_headers=True)
    assert "X-TimeTrack" not in json.dumps(api.create())  # successes are untouched
    wrong = {**AUTH, "X-TimeTrack-Api-Secret": "wrong-" + SECRET}
    detail = error_of(api("GET", headers=wrong), 401)["detail"]
    assert detail.startswith("X-TimeTrack-Api-Secret is not valid for this account\nRequest headers:\n")
    assert f"\r\nX-TimeTrack-Api-Key: {KEY}\r\nX-TimeTrack-Api-Secret: wrong-{SECRET}\r\n" in detail
    detail = error_of(api("GET", "/attendances/99"), 404)["detail"]
    assert f"X-TimeTrack-Api-Secret: {SECRET}\r\n" in detail
    emu.set_faults(echo_headers=True, gateway_error=1, gateway_status=503)
    r = api("POST", json=ENTRY)
    assert r.status_code == 503 and r.text.startswith("<html>")
    assert f"X-TimeTrack-Api-Secret: {SECRET}\r\n" in r.text
    assert r.text.index("<pre>Request headers:") < r.text.index("</body>")
    assert emu.stats()["faults"] == {"echo_headers": 3, "gateway_error": 1}
    assert SECRET not in caplog.text  # the emulator's own log still never holds it


# -- the server's clock


@pytest.mark.parametrize("offset", [3600.0, -2.5 * 86400])
def test_date_offset_shifts_the_date_of_every_answer(api, emu, offset):
    emu.set_faults(date_offset=offset, error_rate=1, max_faults=1)
    before = time.time()
    answers = [api("GET"), api("GET"), api.admin("GET", "/stats"), api("GET", "/attendances/9")]
    after = time.time()
    assert [r.status_code for r in answers][1:] == [200, 200, 404] and answers[0].status_code >= 500
    for r in answers:  # even once the budget is spent: a clock, not a per-request fault
        date = parsedate_to_datetime(r.headers["Date"]).timestamp()
        assert before + offset - 1 <= date <= after + offset  # Date has whole seconds
    assert emu.stats()["faults"] == {"error_rate": 1, "date_offset": 3}  # API answers counted
    emu.set_faults()
    date = parsedate_to_datetime(api("GET").headers["Date"]).timestamp()
    assert time.time() - 2 <= date <= time.time()


# -- accepted at once, answered late


def test_latency_accepts_a_burst_of_connections_at_once_and_answers_late(emu):
    count, connect_timeout = 300, 0.75  # Linux retries a dropped SYN after 1 s
    emu.set_faults(latency=60)
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", emu.port))
            socks.append(sock)
        pending, deadline = set(socks), time.monotonic() + connect_timeout
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], 0.05)
            pending.difference_update(writable)
        assert not pending, f"{len(pending)} of {count} connections not accepted within {connect_timeout} s"
        request = raw_get(emu)
        for sock in socks:
            sock.setblocking(True)
            sock.sendall(request)
        # Every request was read (the latency is running for each), none answered yet.
        assert wait_for(lambda: emu.stats()["faults"].get("latency") == count)
        readable, _, _ = select.select(socks, [], [], 0.2)
        assert readable == [] and emu.stats()["requests"] == 0
    finally:
        emu.stop()  # the waiting requests are dropped, not answered late
        for sock in socks:
            sock.close()


# -- settings


def test_new_faults_parse_from_the_command_line_and_the_admin_endpoint(api, emu):
    faults = Faults.parse(["gateway_error=0.3", "gateway_down=0.1", "gateway_status=503", "captive_portal=Redirect", "dribble_head=0.5",
                           "dribble_body=1", "oversize=300000000", "oversize_chunked=yes", "echo_headers=on",
                           "date_offset=-3600"])
    assert faults.active() == {
        "gateway_error": 0.3, "gateway_status": 503, "gateway_down": 0.1, "captive_portal": "redirect", "dribble_head": 0.5,
        "dribble_body": 1.0, "oversize": 300_000_000, "oversize_chunked": True, "echo_headers": True,
        "date_offset": -3600.0,
    }
    for bad, words in (("gateway_status=500", "0 or 502 or 503 or 504"), ("gateway_error=2", "probability"),
                       ("captive_portal=maybe", "off or page or redirect or 511"), ("oversize=-1", "0 or more"),
                       ("oversize=1.5", "whole number"), ("dribble_body=-1", "0 or more"),
                       ("date_offset=1e12", "within"), ("date_offset=nan", "number"), ("echo_headers=2", "true")):
        with pytest.raises(ValueError, match=words):
            Faults.parse([bad])
    r = api.admin("PUT", "/faults", json={"captive_portal": "511", "date_offset": 30})
    assert r.status_code == 200 and r.json()["captive_portal"] == "511"
    assert api("GET").status_code == 511
    for body in ({"captive_portal": True}, {"gateway_status": "502"}, {"oversize": 1.0}):
        assert error_of(api.admin("PUT", "/faults", json=body), 400)
    assert api.admin("PUT", "/faults", json={}).json() == Faults().to_dict()


def spawn_cli(*args: str) -> tuple[subprocess.Popen, str]:
    """`kiosk emulator --port 0 ARGS` with the secret in its environment; (process, URL from its start line)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "KIOSK_EMULATOR_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "emulator", "--port", "0", "--key", KEY, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(TIMEOUT * 2, proc.kill)  # never hang the suite on a silent child
    watchdog.start()
    try:
        line = proc.stdout.readline()
    finally:
        watchdog.cancel()
    match = re.fullmatch(r"TimeTrack emulator at (http://127\.0\.0\.1:([1-9]\d*)/api/v2/ext) \((.*)\); Ctrl-C to stop\n",
                         line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    assert line.split()[3] == match.group(1)  # what scripts read: the 4th word
    return proc, match.group(1)


def test_the_emulator_process_prints_its_url_and_faults_and_keeps_the_secret_out_of_argv():
    proc, url = spawn_cli("--fault", "captive_portal=page", "--fault", "date_offset=-60")
    try:
        assert SECRET.encode() not in open(f"/proc/{proc.pid}/cmdline", "rb").read()
        r = requests.post(url + "/attendances", json=ENTRY, headers=AUTH, timeout=TIMEOUT)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0 and out == "emulator stopped\n" and SECRET not in out + err


# -- docstrings


def test_the_docstring_examples_hold():
    modules = [package] + [importlib.import_module(f"{package.__name__}.{m.name}")
                           for m in pkgutil.iter_modules(package.__path__)]
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS) for module in modules]
    assert sum(r.failed for r in results) == 0
    assert sum(r.attempted for r in results) >= 10
