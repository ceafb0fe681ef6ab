"""Unit tests of the client's pipeline steps: the Exchange and its one retry-log line, the
outcome rules, the connection options, and how the auth, redirect and retry steps combine."""

from __future__ import annotations

import importlib.util
import logging
import random
import ssl
from collections.abc import Callable

import httpx
import pytest

from shared.errors import (
    ApiTransportError,
    ConfigurationError,
    MalformedResponseError,
    UnsafeRequestError,
)
from shared.webapi import ApiClient, RetryPolicy
from shared.webapi.connection import DEFAULT_LIMITS, DEFAULT_TIMEOUT, ConnectionOptions
from shared.webapi.exchange import LOGGER_NAME, Exchange
from shared.webapi.outcome import final_answer, give_up_level, to_response, transport_failure
from shared.webapi.retry import Disposition
from tests.clock import FakeClock
from tests.webapi.fakes import BASE, FakeTokens

Handler = Callable[[httpx.Request], httpx.Response]


def _exchange(method: str = "POST", policy: RetryPolicy | None = None) -> Exchange:
    exchange = Exchange(
        method=method,
        url=httpx.URL(BASE + "/users?$top=5"),
        json=None,
        content=None,
        headers={},
        params=None,
        policy=policy or RetryPolicy(max_attempts=3),
        idempotent=False,
        started=0.0,
    )
    exchange.next_attempt()
    return exchange


def _client(handler: Handler, clock: FakeClock, tokens: FakeTokens | None = None) -> ApiClient:
    return ApiClient(
        BASE,
        tokens or FakeTokens(),
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(0),
    )


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# -- the Exchange ------------------------------------------------------------------------


def test_each_attempt_gets_a_new_request_id() -> None:
    exchange = _exchange()
    first = exchange.request_id
    exchange.next_attempt()
    assert exchange.attempts == 2
    assert exchange.request_id != first


def test_one_retry_line_for_statuses_and_transport_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    exchange = _exchange("GET")
    exchange.log_retry("answered 429", 1.5)
    exchange.log_retry("failed: ReadTimeout", 0.25)
    rid = exchange.request_id
    assert _messages(caplog, logging.WARNING) == [
        f"GET /v1.0/users answered 429 (client-request-id {rid}); retry 1/2 in 1.50s",
        f"GET /v1.0/users failed: ReadTimeout (client-request-id {rid}); retry 1/2 in 0.25s",
    ]
    assert "$top" not in caplog.text  # the path only, never the query


# -- the outcome rules -------------------------------------------------------------------


def test_give_up_level_is_debug_for_a_caller_that_resends() -> None:
    assert give_up_level(RetryPolicy.never()) == logging.DEBUG
    assert give_up_level(RetryPolicy(max_attempts=2)) == logging.ERROR


def test_unknown_outcome_is_marked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    exchange = _exchange("POST")
    answer = to_response(httpx.Response(504, json={"error": {"code": "x"}}), exchange)
    assert not answer.outcome_unknown
    final = final_answer(exchange, answer, Disposition.OUTCOME_UNKNOWN)
    assert final.outcome_unknown
    assert (final.status, final.body, final.request_id) == (504, answer.body, answer.request_id)
    assert _messages(caplog, logging.ERROR) == [
        f"POST /v1.0/users answered 504 (client-request-id {exchange.request_id}): "
        "outcome unknown, not resent"
    ]


def test_error_answer_logged_with_its_code(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    exchange = _exchange("GET")
    answer = to_response(
        httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound"}}), exchange
    )
    assert final_answer(exchange, answer, Disposition.DONE) is answer
    assert _messages(caplog, logging.INFO) == [
        f"GET /v1.0/users answered 404 Request_ResourceNotFound "
        f"(client-request-id {exchange.request_id})"
    ]
    caplog.clear()
    ok = to_response(httpx.Response(200, json={}), exchange)
    final_answer(exchange, ok, Disposition.DONE)
    assert caplog.records == []


def test_to_response_notes_a_bad_json_body() -> None:
    exchange = _exchange()
    bad = httpx.Response(200, headers={"content-type": "application/json"}, content=b"{x")
    answer = to_response(bad, exchange)
    assert answer.body is None
    assert answer.json_problem == "body is not valid JSON (JSONDecodeError)"
    assert answer.attempts == 1


@pytest.mark.parametrize(
    ("disposition", "unknown"),
    [(Disposition.OUTCOME_UNKNOWN, True), (Disposition.DONE, False)],
)
def test_transport_failure(
    caplog: pytest.LogCaptureFixture, disposition: Disposition, unknown: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    exchange = _exchange("POST", RetryPolicy.never())
    error = transport_failure(exchange, httpx.ReadTimeout("slow"), disposition)
    assert error.outcome_unknown is unknown
    assert str(error).startswith(
        f"POST /v1.0/users: ReadTimeout after 1 attempt(s) "
        f"(client-request-id {exchange.request_id})"
    )
    assert str(error).endswith("may have been applied") is unknown
    [line] = _messages(caplog, logging.DEBUG)  # one attempt: the caller logs, not us
    assert line.endswith("; outcome unknown, not resent") is unknown


# -- the connection options --------------------------------------------------------------


def test_connection_defaults_and_timeout_forms() -> None:
    options = ConnectionOptions.build(
        transport=None, verify=True, http2=False, limits=None, timeout=None
    )
    assert options.timeout == DEFAULT_TIMEOUT
    assert options.limits == DEFAULT_LIMITS
    assert isinstance(options.verify, ssl.SSLContext)
    seconds = ConnectionOptions.build(
        transport=None, verify=options.verify, http2=False, limits=None, timeout=5.0
    )
    assert seconds.timeout == httpx.Timeout(5.0)
    assert seconds.verify is options.verify


def test_connection_refuses_verify_false_and_http2_without_h2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(UnsafeRequestError, match="cannot be turned off"):
        ConnectionOptions.build(transport=None, verify=False, http2=False, limits=None, timeout=1)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigurationError, match="needs the 'h2' package"):
        ConnectionOptions.build(transport=None, verify=True, http2=True, limits=None, timeout=1)


async def test_opened_client_follows_no_redirects_and_ignores_the_environment() -> None:
    options = ConnectionOptions.build(
        transport=None, verify=True, http2=False, limits=None, timeout=None
    )
    async with options.open() as client:
        assert client.follow_redirects is False
        assert client.trust_env is False


# -- the steps combined ------------------------------------------------------------------


async def test_one_forced_refresh_per_request_across_retries() -> None:
    answers = iter([401, 429, 401])
    tokens = FakeTokens()

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, headers={"Retry-After": "1"} if status == 429 else {})

    clock = FakeClock()
    async with _client(handler, clock, tokens) as client:
        answer = await client.request("GET", "/users")
    assert answer.status == 401  # the second 401 is final: the refresh was spent
    assert answer.attempts == 2
    assert tokens.calls == [False, True, False]
    assert clock.sleeps == [1.0]


async def test_401_is_judged_after_same_origin_redirects() -> None:
    sent: list[tuple[str, str]] = []
    tokens = FakeTokens()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, request.headers["authorization"]))
        if request.url.path == "/v1.0/old":
            return httpx.Response(302, headers={"Location": "/v1.0/new"})
        if request.headers["authorization"] == "Bearer token-0":
            return httpx.Response(401)
        return httpx.Response(200, json={"ok": True})

    async with _client(handler, FakeClock(), tokens) as client:
        assert await client.get_json("/old") == {"ok": True}
    assert tokens.calls == [False, True]  # one token per send, not per redirect hop
    assert sent == [
        ("/v1.0/old", "Bearer token-0"),
        ("/v1.0/new", "Bearer token-0"),
        ("/v1.0/old", "Bearer token-1"),
        ("/v1.0/new", "Bearer token-1"),
    ]


async def test_refused_redirect_names_the_hop_and_sends_nothing_there() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        if request.url.path == "/v1.0/a":
            return httpx.Response(301, headers={"Location": "/v1.0/b"})
        return httpx.Response(308, headers={"Location": "https://evil.example/c"})

    async with _client(handler, FakeClock()) as client:
        with pytest.raises(UnsafeRequestError, match=r"GET /v1\.0/b redirected to https://evil"):
            await client.request("GET", "/a")
    assert sent == [BASE + "/a", BASE + "/b"]


async def test_redirect_loop_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "/v1.0/again"})

    async with _client(handler, FakeClock()) as client:
        with pytest.raises(MalformedResponseError, match="more than 5 redirects"):
            await client.request("GET", "/start")


async def test_write_redirected_with_301_is_handed_back_unfollowed() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(301, headers={"Location": "/v1.0/elsewhere"})

    async with _client(handler, FakeClock()) as client:
        answer = await client.request("POST", "/users", json={})
    assert answer.status == 301
    assert sent == ["POST"]


async def test_every_retry_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls == 2:
            return httpx.Response(503, headers={"Retry-After": "2"})
        return httpx.Response(200, json={})

    async with _client(handler, FakeClock()) as client:
        answer = await client.request("GET", "/users")
    assert answer.attempts == 3
    retries = _messages(caplog, logging.WARNING)
    assert len(retries) == 2
    assert "failed: ConnectError" in retries[0]
    assert retries[0].endswith("retry 1/4 in 0.42s")
    assert "answered 503" in retries[1]
    assert retries[1].endswith("retry 2/4 in 2.00s")


async def test_transport_error_is_chained() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with _client(handler, FakeClock()) as client:
        with pytest.raises(ApiTransportError, match="ReadTimeout after 1 attempt") as info:
            await client.request("POST", "/users", json={})
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
