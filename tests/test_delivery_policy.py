"""The delivery policy and schedule as pure functions: no threads, no HTTP, no store.

Results are built the way the client builds them (:func:`classify_answer` over
an :class:`Answer`, :func:`classify_failure` over the exceptions requests and
the transport raise), so each case here is one that a real request produces.
"""

from __future__ import annotations

import doctest
import importlib
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from kiosk.delivery.answers import (
    NOT_SENT,
    Cause,
    SendOutcome,
    SendResult,
    classify_answer,
    classify_failure,
)
from kiosk.delivery.policy import BREAKER, RETRY_AFTER_MAX, Action, Do, Pause, Policy, State, Timing
from kiosk.delivery.schedule import LIMIT, Phase, Schedule, settle_left
from kiosk.delivery.transport import Answer, BodyTooLarge, DeadlineExceeded
from kiosk.model import OutboxEntry

SECRET = "Polic7-S3cret"
TIMING = Timing(backoff_initial=1.0, backoff_max=300.0, probe_interval=5.0, settle=60.0)
NOW = 1000.0
WALL = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class MaxRng(random.Random):
    def uniform(self, a, b):
        return b


@pytest.fixture
def policy():
    return Policy(TIMING, MaxRng())


def answer(status: int, body: bytes = b"", ctype: str = "", **headers) -> Answer:
    h = CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()})
    if ctype:
        h["Content-Type"] = ctype
    return Answer(status, "", h, body)


def post(status: int, body: bytes = b"", ctype: str = "", **headers) -> SendResult:
    return classify_answer(answer(status, body, ctype, **headers), created=True, secrets=["k", SECRET])


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    reason.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return requests.ConnectionError(MaxRetryError(None, "/", reason))


NGINX_503 = b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n</html>\r\n"
PORTAL = b"<!DOCTYPE html><html><head><title>Guest Wi-Fi - Sign in</title></head><body>...</body></html>"


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("status, body, ctype, outcome, cause", [
    (201, b'{"ID": 7, "user": "anna"}', "application/json", SendOutcome.DELIVERED, Cause.NONE),
    (200, b"", "", SendOutcome.DELIVERED, Cause.NONE),  # an empty 2xx: TimeTrack may answer so
    (200, PORTAL, "text/html", SendOutcome.AMBIGUOUS, Cause.HTML),  # a captive portal: never "delivered"
    (200, b"OK", "text/plain", SendOutcome.AMBIGUOUS, Cause.HTML),
    (200, b'"stored"', "application/json", SendOutcome.AMBIGUOUS, Cause.UNCONFIRMED),
    (302, b"", "", SendOutcome.AMBIGUOUS, Cause.REDIRECT),
    (511, PORTAL, "text/html", SendOutcome.AMBIGUOUS, Cause.HTML),
    (404, PORTAL, "text/html", SendOutcome.AMBIGUOUS, Cause.HTML),  # a web front end's 404 page
    (400, b'{"errors": [{"title": "Bad request", "detail": "Unknown user ghost"}]}', "application/json",
     SendOutcome.REJECTED, Cause.REJECTED),
    (401, b"", "", SendOutcome.AUTH, Cause.AUTH),
    (403, PORTAL, "text/html", SendOutcome.AUTH, Cause.AUTH),
    (429, b"", "", SendOutcome.RETRY, Cause.RATE_LIMITED),
    (408, b"", "", SendOutcome.AMBIGUOUS, Cause.TIMEOUT),
    (500, b'{"errors": []}', "application/json", SendOutcome.AMBIGUOUS, Cause.SERVER_ERROR),
    (502, NGINX_503, "text/html", SendOutcome.AMBIGUOUS, Cause.SERVER_ERROR),
    (503, NGINX_503, "text/html", SendOutcome.AMBIGUOUS, Cause.SERVER_ERROR),  # a gateway after forwarding
    (504, NGINX_503, "text/html", SendOutcome.AMBIGUOUS, Cause.SERVER_ERROR),
])
def test_answers_to_a_post(status, body, ctype, outcome, cause):
    result = post(status, body, ctype)
    assert (result.outcome, result.cause) == (outcome, cause)
    assert result.maybe_sent == (outcome is SendOutcome.AMBIGUOUS)


def test_a_list_answer_must_be_json_to_count_as_timetrack():
    get = lambda a: classify_answer(a, created=False)  # noqa: E731
    assert get(answer(200, b"[]", "application/json")).outcome is SendOutcome.OK
    assert get(answer(200, PORTAL, "text/html")).cause is Cause.HTML
    assert get(answer(200, b"")).cause is Cause.UNCONFIRMED
    assert get(answer(503, NGINX_503, "text/html")).outcome is SendOutcome.RETRY  # a GET is never "ambiguous"


@pytest.mark.parametrize("exc, cause, sent", [
    (refused(), Cause.REFUSED, False),
    (requests.ConnectionError(MaxRetryError(None, "/", NameResolutionError("tt.example", None, OSError("x")))),
     Cause.DNS, False),
    (requests.exceptions.ConnectTimeout("connect timed out"), Cause.CONNECT_TIMEOUT, False),
    (requests.exceptions.SSLError("handshake failed"), Cause.TLS, False),
    (requests.exceptions.ReadTimeout("read timed out"), Cause.TIMEOUT, True),
    (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
     Cause.RESET, True),
    (requests.exceptions.ChunkedEncodingError("cut"), Cause.TRUNCATED, True),
    (DeadlineExceeded(30.0), Cause.DEADLINE, True),
    (BodyTooLarge(201, 1 << 20), Cause.TOO_LARGE, True),
])
def test_failures_without_an_answer(exc, cause, sent):
    result = classify_failure(exc, created=True)
    assert result.cause is cause
    assert result.outcome is (SendOutcome.AMBIGUOUS if sent else SendOutcome.RETRY)
    assert result.maybe_sent is sent and (cause in NOT_SENT) is not sent


def test_the_servers_words_are_cut_cleaned_and_masked():
    body = ('{"errors": [{"title": "Bad request", "detail": "\\u001b[2Jecho X-TimeTrack-Api-Secret: '
            + SECRET + ' ' + "x" * 1000 + '"}]}').encode()
    result = post(400, body, "application/json")
    assert SECRET not in result.message and "********" in result.message
    assert "\x1b" not in result.message and len(result.message) <= 310


# ---------------------------------------------------------------- verdicts


def test_ambiguity_is_the_default_and_only_known_unsent_failures_skip_the_lookup(policy):
    for result in (post(503, NGINX_503, "text/html"), classify_failure(DeadlineExceeded(30), created=True),
                   classify_failure(requests.exceptions.ReadTimeout("t"), created=True)):
        verdict = policy.verdict(result, attempts=0, posted=True)
        assert verdict.action is Action.RETRY and verdict.ambiguous and verdict.attempt
        assert verdict.delay >= TIMING.settle  # the lookup waits until the server has surely finished
    for result in (classify_failure(refused(), created=True), post(401), post(429, Retry_After="7")):
        verdict = policy.verdict(result, attempts=0, posted=True)
        assert verdict.action is Action.PAUSE and not verdict.ambiguous and not verdict.attempt


def test_a_web_page_pauses_everything_and_its_entry_is_looked_up_later(policy):
    verdict = policy.verdict(post(200, PORTAL, "text/html"), attempts=3, posted=True)
    assert verdict.action is Action.PAUSE and verdict.pause is State.NOT_TIMETRACK
    assert verdict.ambiguous and not verdict.attempt


def test_a_failed_lookup_never_marks_anew_and_counts_an_attempt(policy):
    lookup = classify_answer(answer(500, b"{}", "application/json"), created=False)
    verdict = policy.verdict(lookup, attempts=2, posted=False)
    assert verdict.action is Action.RETRY and verdict.attempt and not verdict.ambiguous


def test_retry_after_is_a_minimum_within_reason(policy):
    assert policy.verdict(post(429, Retry_After="7"), attempts=0, posted=True).at_least == 7
    huge = policy.verdict(post(429, Retry_After="100000000000"), attempts=0, posted=True).at_least
    assert huge == max(TIMING.backoff_max, RETRY_AFTER_MAX)
    verdict = policy.verdict(post(503, NGINX_503, "text/html", Retry_After="30"), attempts=0, posted=True)
    assert verdict.pause is State.BACKING_OFF and verdict.at_least == 30 and verdict.ambiguous


def test_404_asks_whether_the_base_url_is_wrong_before_rejecting(policy):
    result = post(404, b'{"errors": [{"title": "Not found"}]}', "application/json")
    assert policy.verdict(result, attempts=0, posted=True).action is Action.CHECK_BASE_URL
    assert policy.verdict(post(400, b"{}", "application/json"), attempts=0, posted=True).action is Action.REJECT


def test_backoff_is_full_jitter_capped():
    policy = Policy(TIMING, random.Random(3))
    for n in range(1, 40):
        assert 0.01 <= policy.backoff(n) <= min(300.0, 2.0 ** (n - 1))
    assert Policy(TIMING, MaxRng()).backoff(60) == 300.0


def test_the_breaker_pauses_after_consecutive_failures(policy):
    pause = Pause()
    net = classify_failure(requests.exceptions.ReadTimeout("t"), created=True)
    for _ in range(BREAKER - 1):
        pause, tripped = policy.after_failure(pause, net)
        assert tripped is None
    assert policy.after_failure(pause, net)[1] is State.OFFLINE  # no answer at all, every time
    pause = policy.after_failure(Pause(), post(502, NGINX_503, "text/html"))[0]
    pause = policy.after_failure(pause, net)[0]
    assert policy.after_failure(pause, net)[1] is State.BACKING_OFF  # the server answered once
    assert policy.after_success(policy.after_failure(Pause(), net)[0]).streak == 0


# ---------------------------------------------------------------- the global pause


def test_offline_probes_every_probe_interval_and_resumes_on_an_answer(policy):
    pause, wait = policy.enter(Pause(), State.OFFLINE, NOW, "refused")
    assert wait == 1.0 and pause.level == 1  # backoff_initial, first level
    assert policy.step(pause, NOW).do is Do.SLEEP
    assert policy.step(pause, NOW, woken=True).do is Do.PROBE  # a new entry: look at once
    ok = classify_answer(answer(200, b"[]", "application/json"), created=False)
    assert policy.after_probe(pause, ok, NOW + 0.5) == Pause()
    step = policy.step(pause, NOW + 2.0)  # the backoff ran out: deliver, keeping the level
    assert step.do is Do.DELIVER and step.pause.level == 1 and not step.pause.active
    assert policy.enter(step.pause, State.OFFLINE, NOW + 2.0)[1] == 2.0  # the next failure waits longer


def test_credentials_are_rechecked_rarely_and_never_time_out(policy):
    pause, wait = policy.enter(Pause(), State.AUTH, NOW, "HTTP 401")
    assert wait == 30.0 and math.isinf(pause.until)
    assert policy.step(pause, NOW + 29).do is Do.SLEEP and policy.step(pause, NOW + 1e6).do is Do.PROBE
    still = policy.after_probe(pause, classify_failure(refused(), created=False), NOW + 30)
    assert still.state is State.AUTH and still.next_probe == NOW + 60  # inconclusive: keep waiting


def test_a_portal_is_probed_with_backoff_until_timetrack_answers_again(policy):
    portal = classify_answer(answer(200, PORTAL, "text/html"), created=False)
    pause, wait = policy.enter(Pause(), State.NOT_TIMETRACK, NOW, portal.message)
    waits = [wait]
    for i in range(12):
        now = pause.next_probe
        assert policy.step(pause, now).do is Do.PROBE
        pause = policy.after_probe(pause, portal, now)
        waits.append(pause.next_probe - now)
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0] and max(waits) == 300.0  # probe_interval doubling to backoff_max
    assert policy.step(pause, pause.next_probe - 1, woken=True).do is Do.SLEEP  # taps do not probe a portal
    ok = classify_answer(answer(200, b"[]", "application/json"), created=False)
    assert policy.after_probe(pause, ok, NOW) == Pause()  # resumes by itself


# ---------------------------------------------------------------- the schedule


def entry(i: int, **kw) -> OutboxEntry:
    return OutboxEntry(id=i, username="anna", uid="04A1B2C3", start=WALL - timedelta(hours=2),
                       end=WALL - timedelta(hours=1), **kw)


def test_schedule_remembers_only_entries_that_wait_and_at_most_its_limit():
    schedule = Schedule(limit=3)
    assert schedule.due_at(entry(1), NOW, WALL, settle=60, horizon=300) == NOW
    assert len(schedule) == 0  # no wait: nothing remembered
    for i in range(2, 10):
        schedule.due_at(entry(i, next_attempt=WALL + timedelta(seconds=i)), NOW, WALL, settle=60, horizon=300)
    assert len(schedule) == 3
    forgotten = entry(9, next_attempt=WALL + timedelta(seconds=9))
    assert schedule.due_at(forgotten, NOW, WALL, settle=60, horizon=300) == NOW + 9  # from the store again
    schedule.prune(NOW + 3.5)
    assert len(schedule) == 1 and LIMIT >= 1000


def test_schedule_phases_and_a_clock_that_jumped():
    schedule = Schedule()
    settling = entry(1, ambiguous=True, ambiguous_at=WALL - timedelta(seconds=10))
    assert schedule.phase(settling, NOW, WALL, settle=60, horizon=300) is Phase.SETTLING
    assert settle_left(settling, WALL, 60) == 50
    assert settle_left(entry(2, ambiguous=True, ambiguous_at=WALL + timedelta(days=1)), WALL, 60) == 0
    far = entry(3, next_attempt=WALL + timedelta(days=3650))  # a clock far ahead wrote it
    assert schedule.due_at(far, NOW, WALL, settle=60, horizon=300) == NOW + 300
    schedule.in_flight = frozenset({4})
    assert schedule.phase(entry(4), NOW, WALL, settle=60, horizon=300) is Phase.IN_FLIGHT
    assert schedule.phase(entry(5), NOW, WALL, settle=60, horizon=300) is Phase.DUE
    assert schedule.phase(far, NOW, WALL, settle=60, horizon=300) is Phase.WAITING


# ---------------------------------------------------------------- docstring examples


@pytest.mark.parametrize("name", ["kiosk.delivery.answers", "kiosk.delivery.policy", "kiosk.delivery.schedule",
                                  "kiosk.clock"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
