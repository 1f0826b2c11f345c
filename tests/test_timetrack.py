"""The TimeTrack client over real loopback HTTP against the emulator (no patching of requests)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from kiosk import clock, config
from kiosk.config import ApiSettings
from kiosk.model import OutboxEntry
from kiosk.sim.emulator import Emulator
from kiosk.delivery.answers import classify_failure
from kiosk.delivery.client import (
    InsecureURL,
    Cause,
    LookupFailed,
    SendOutcome,
    TimeTrackClient,
    _matches,
    check_url,
    parse_retry_after,
)

from .kioskproc import closed_port

KEY, SECRET = "kiosk-key", "Sup3r-S3cret-do-not-log"
START = datetime(2026, 3, 2, 7, 59, 58, 123456, tzinfo=UTC)


def entry(i: int = 0, user: str = "anna", **extra) -> OutboxEntry:
    start = START + timedelta(hours=i)
    return OutboxEntry(id=i + 1, username=user, uid="04A1B2C3", start=start,
                       end=start + timedelta(minutes=30, microseconds=654321), **extra)


@pytest.fixture
def emu():
    with Emulator(key=KEY, secret=SECRET, users=["anna", "ben"]) as emulator:
        yield emulator


def settings(emu: Emulator | None = None, **kw) -> ApiSettings:
    base = emu.url if emu is not None else "http://127.0.0.1:9/api/v2/ext"
    values = dict(base_url=base, key=KEY, secret=SECRET, connect_timeout=2.0, read_timeout=2.0)
    values.update(kw)
    return ApiSettings(**values)


@pytest.fixture
def client(emu):
    with TimeTrackClient(settings(emu)) as c:
        yield c


# ---------------------------------------------------------------- session setup


def test_session_carries_auth_headers_timeouts_and_no_retries(client):
    session = client.transport.session()  # what each of the transport's helper threads uses
    assert session.headers["X-TimeTrack-Api-Key"] == KEY
    assert session.headers["X-TimeTrack-Api-Secret"] == SECRET
    assert session.headers["Accept-Encoding"] == "identity"  # no decompression bombs past the body cap
    assert client.timeout == (2.0, 2.0) and client.transport.timeout == (2.0, 2.0)
    assert client.deadline == client.transport.deadline == 30.0  # api.request_deadline's default
    assert client.verify is True or client.verify == os.environ.get("REQUESTS_CA_BUNDLE") \
        or client.verify == os.environ.get("CURL_CA_BUNDLE")  # never off
    assert session.verify == client.verify and session.trust_env is False
    for scheme in ("http://", "https://"):
        retries = session.get_adapter(scheme + "example.org").max_retries
        assert retries.total == 0 and retries.connect == 0 and retries.read == 0 and retries.status == 0
    session.close()


def test_ca_bundle_is_used_for_verification(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    c = TimeTrackClient(settings(base_url="https://tt.example.com/api/v2/ext", ca_bundle=str(bundle)))
    assert c.verify == str(bundle)


def test_repr_masks_the_secret(client):
    text = repr(client) + str(client)
    assert SECRET not in text and "********" in text
    assert KEY not in text


@pytest.mark.parametrize("url", ["http://timetrack.example.com/api/v2/ext", "http://10.0.0.5/api/v2/ext"])
def test_plain_http_to_a_remote_host_is_refused(url):
    with pytest.raises(InsecureURL, match="https"):
        TimeTrackClient(settings(base_url=url))
    TimeTrackClient(settings(base_url=url, allow_insecure_http=True)).close()
    TimeTrackClient(settings(base_url=url.replace("http://", "https://"))).close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/api", "http://localhost/api", "http://[::1]:80/api"])
def test_plain_http_to_loopback_is_allowed(url):
    TimeTrackClient(settings(base_url=url)).close()


@pytest.mark.parametrize("secret", [SECRET + "\n", " " + SECRET, SECRET + "\u00e9", ""])
def test_a_secret_a_header_cannot_carry_is_refused_without_showing_it(secret):
    with pytest.raises(ValueError, match="api.secret") as info:
        TimeTrackClient(settings(secret=secret))
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("url", ["ftp://x/api", "not a url", "https://user:pw@tt.example.com/api"])
def test_unusable_urls_are_refused(url):
    with pytest.raises(ValueError, match="api.base_url"):
        TimeTrackClient(settings(base_url=url))


@pytest.mark.parametrize("url,insecure", [
    ("http://timetrack.example.com/api", False), ("http://timetrack.example.com/api", True),
    ("http://127.0.0.1:8080/api/", False), ("https://tt.example.com/api/v2/ext/", False),
    ("ftp://x/api", False), ("not a url", False), ("https://user:pw@tt.example.com/api", False),
    ("https:///api", False),
])
def test_the_client_applies_the_config_url_rules(url, insecure):
    """One set of URL rules (config.check_base_url): the client refuses exactly what config refuses."""
    try:
        expected = config.check_base_url(url, insecure)
    except ValueError as exc:
        with pytest.raises(type(exc)) as info:
            check_url(settings(base_url=url, allow_insecure_http=insecure))
        assert str(info.value) == f"api.base_url: {exc}"
    else:
        assert check_url(settings(base_url=url, allow_insecure_http=insecure)) == expected
    assert InsecureURL is config.InsecureURL  # one exception class, importable from both modules


# ---------------------------------------------------------------- create


def test_create_posts_the_entry_in_api_format(client, emu):
    result = client.create(entry(notes="front door"))
    assert result.outcome is SendOutcome.DELIVERED and result.status == 201
    [stored] = emu.entries()
    assert result.server_id == stored["ID"]
    assert stored["user"] == "anna" and stored["notes"] == "front door"
    assert stored["from"] == "2026-03-02T07:59:58.123Z"
    assert stored["to"] == "2026-03-02T08:29:58.777Z"


@pytest.mark.parametrize("status,body", [(200, True), (200, False), (201, False)])
def test_create_accepts_any_2xx_with_or_without_body(client, emu, status, body):
    emu.set_faults(create_status=status, create_body=body)
    result = client.create(entry())
    assert result.outcome is SendOutcome.DELIVERED and result.status == status
    assert result.server_id == (emu.entries()[0]["ID"] if body else None)


def test_local_timezone_setting_writes_wall_clock_time(emu, monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        with TimeTrackClient(settings(emu, timezone="local")) as c:
            assert c.create(entry()).outcome is SendOutcome.DELIVERED
            assert emu.entries()[0]["from"] == "2026-03-02T08:59:58.123Z"  # UTC+1 in March
            assert c.find(entry()) == emu.entries()[0]["ID"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_wrong_secret_is_auth(emu):
    with TimeTrackClient(settings(emu, secret="wrong")) as c:
        result = c.create(entry())
    assert result.outcome is SendOutcome.AUTH and result.status == 401
    assert emu.entries() == []


def test_unknown_user_is_a_rejection_with_the_servers_reason(client):
    result = client.create(entry(user="ghost"))
    assert result.outcome is SendOutcome.REJECTED and result.status == 400
    assert "Unknown user" in result.message and "ghost" in result.message


def test_rate_limit_is_retry_with_retry_after(client, emu):
    emu.set_faults(rate_limit=1.0, retry_after=7)
    result = client.create(entry())
    assert result.outcome is SendOutcome.RETRY and result.status == 429 and result.retry_after == 7
    assert not result.connectivity


def test_server_errors(client, emu):
    """Any 5xx may follow a stored entry (a gateway answers after forwarding): look it up first.
    (Before #13 a 503 counted as "not processed" and was re-sent without a lookup.)"""
    emu.set_faults(error_rate=1.0, seed=3)
    seen = {}
    for i in range(40):
        r = client.create(entry(i))
        seen[r.status] = (r.outcome, r.cause)
    assert seen == {s: (SendOutcome.AMBIGUOUS, Cause.SERVER_ERROR) for s in (500, 502, 503)}


def test_connection_refused_is_retry_not_sent():
    with TimeTrackClient(settings(base_url=f"http://127.0.0.1:{closed_port()}/api/v2/ext")) as c:
        result = c.create(entry())
        assert result.outcome is SendOutcome.RETRY and result.connectivity and "not sent" in result.message
        assert c.ping().outcome is SendOutcome.RETRY
        with pytest.raises(LookupFailed) as info:
            c.find(entry())
        assert info.value.result.connectivity


def test_tls_failure_is_not_sent(emu):
    """https:// to a plain-http port: the handshake fails before any request is sent."""
    with TimeTrackClient(settings(base_url=emu.url.replace("http://", "https://"))) as c:
        result = c.create(entry())
    assert result.outcome is SendOutcome.RETRY and "TLS error (not sent)" in result.message
    assert emu.entries() == []


@pytest.mark.parametrize("fault", ["drop_after_store", "drop_before_store"])
def test_dropped_connection_is_ambiguous(client, emu, fault):
    emu.set_faults(**{fault: 1.0, "max_faults": 1})
    result = client.create(entry())
    assert result.outcome is SendOutcome.AMBIGUOUS and result.status is None
    assert len(emu.entries()) == (1 if fault == "drop_after_store" else 0)
    assert emu.stats()["by_method"] == {"POST": 1}  # urllib3 did not re-send it


def test_read_timeout_during_a_slow_body_is_ambiguous(emu):
    emu.set_faults(slow_body=2.0, max_faults=1)
    with TimeTrackClient(settings(emu, read_timeout=0.2)) as c:
        result = c.create(entry())
    assert result.outcome is SendOutcome.AMBIGUOUS and "timeout" in result.message.lower()
    assert len(emu.entries()) == 1


def test_read_timeout_before_any_answer_is_ambiguous(emu):
    emu.set_faults(latency=1.0, max_faults=1)
    with TimeTrackClient(settings(emu, read_timeout=0.2)) as c:
        result = c.create(entry())
    assert result.outcome is SendOutcome.AMBIGUOUS and result.connectivity


def test_a_post_is_sent_exactly_once_after_a_503(client, emu):
    emu.set_faults(error_rate=1.0, seed=0, max_faults=1)
    result = client.create(entry())
    assert result.status in (500, 502, 503)
    assert emu.stats()["by_method"] == {"POST": 1}


def test_connect_timeout_and_dns_failure_are_not_sent():
    """Hard to provoke on loopback: classify the exceptions requests raises for them."""
    from urllib3.exceptions import MaxRetryError, NameResolutionError, ProtocolError

    r = classify_failure(requests.exceptions.ConnectTimeout("connect timed out"), created=True)
    assert r.outcome is SendOutcome.RETRY
    dns = MaxRetryError(None, "/", NameResolutionError("tt.example", None, OSError("no such host")))
    assert classify_failure(requests.exceptions.ConnectionError(dns), created=True).outcome is SendOutcome.RETRY
    reset = ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    assert classify_failure(requests.exceptions.ConnectionError(reset), created=True).outcome \
        is SendOutcome.AMBIGUOUS
    assert classify_failure(requests.exceptions.ChunkedEncodingError("cut"), created=True).outcome \
        is SendOutcome.AMBIGUOUS


def test_retry_after_forms():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    for text in ("nan", "inf", "-inf", "1e999", "Infinity"):  # no delay a sleep could take
        assert parse_retry_after(text) is None


# ---------------------------------------------------------------- find and ping


def test_find_returns_the_id_of_an_equal_entry(client, emu):
    assert client.find(entry()) is None
    created = client.create(entry()).server_id
    client.create(entry(1))
    assert client.find(entry()) == created
    moved = entry()
    moved = moved.replace(end=moved.end + timedelta(milliseconds=1))
    assert client.find(moved) is None  # other to, at millisecond precision
    assert client.find(entry(user="ben")) is None
    shifted = entry()
    shifted = shifted.replace(start=shifted.start + timedelta(microseconds=400))
    assert client.find(shifted) == created  # same millisecond


def test_find_pages_through_the_list(client, emu):
    for i in range(7):
        client.create(entry(i))
    client.page_limit = 2
    assert client.find(entry(6)) == emu.entries()[6]["ID"]
    assert client.find(entry(8)) is None
    pages = emu.stats()["by_method"]["GET"]
    assert pages == 4 + 4  # 2+2+2+1 rows for each lookup


def test_find_raises_when_the_lookup_fails(client, emu):
    emu.set_faults(unauthorized=True)
    with pytest.raises(LookupFailed) as info:
        client.find(entry())
    assert info.value.result.outcome is SendOutcome.AUTH
    emu.set_faults(error_rate=1.0)
    with pytest.raises(LookupFailed) as info:
        client.find(entry())
    assert info.value.result.outcome is SendOutcome.RETRY


@pytest.mark.parametrize("row", [
    {"ID": 5, "user": "anna", "from": "2026-03-02T07:59:58.123Z", "to": "2026-03-02T08:29:58.777Z"},
    {"id": 5, "username": "Anna", "from": "2026-03-02T07:59:58.123Z", "to": "2026-03-02T08:29:58.777Z"},
    {"ID": 5, "user": "anna", "from": "2026-03-02T07:59:58Z", "to": "2026-03-02T08:29:58Z"},  # whole seconds
    {"ID": 5, "user": {"username": "anna"}, "from": "2026-03-02T07:59:58.123+00:00",
     "to": "2026-03-02T08:29:58.777+00:00"},
])
def test_row_matching_accepts_both_spellings_and_forms(row):
    e = entry()
    start, end = clock.truncate_ms(e.start), clock.truncate_ms(e.end)
    assert _matches(row, "anna", start, end, "UTC")
    assert not _matches({**row, "to": "2026-03-02T08:29:59.777Z"}, "anna", start, end, "UTC")
    assert not _matches(row, "ben", start, end, "UTC")


def test_ping(client, emu):
    assert client.ping().outcome is SendOutcome.OK
    emu.set_faults(unauthorized=True)
    assert client.ping().outcome is SendOutcome.AUTH
    assert emu.stats()["by_method"] == {"GET": 2}


# ---------------------------------------------------------------- secrets


def test_the_secret_never_reaches_the_logs(emu, caplog):
    caplog.set_level(logging.DEBUG)
    with TimeTrackClient(settings(emu)) as c:
        c.create(entry())
        c.find(entry())
        emu.set_faults(drop_after_store=1.0, max_faults=1)
        c.create(entry(1))
        emu.set_faults(unauthorized=True)
        c.create(entry(2))
        c.ping()
        logging.getLogger("test").info("client: %r", c)
    with TimeTrackClient(settings(base_url=f"http://127.0.0.1:{closed_port()}/api/v2/ext")) as c:
        logging.getLogger("test").info("%s", c.create(entry()).message)
    assert caplog.records  # urllib3 and the emulator did log
    assert SECRET not in caplog.text


def test_results_never_carry_the_secret(emu):
    emu.set_credentials(KEY, "another")
    with TimeTrackClient(settings(emu)) as c:
        result = c.create(entry())
    assert result.outcome is SendOutcome.AUTH
    assert SECRET not in repr(result)


def test_settings_repr_hides_the_secret():
    assert SECRET not in repr(settings()) and SECRET not in repr(replace(settings(), key="x"))
