from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid

import httpx
import pytest

from shared.errors import (
    ApiResponseError,
    ApiTransportError,
    ConfigurationError,
    DeltaTokenExpiredError,
    MalformedResponseError,
    UnsafeRequestError,
)
from shared.webapi import ApiClient, RetryPolicy
from tests.clock import FakeClock
from tests.webapi.fakes import BASE, FakeGraph, FakeTokens, make_client


def _client(
    handler: object, time: FakeClock, tokens: FakeTokens | None = None, **kw: object
) -> ApiClient:
    return ApiClient(
        BASE,
        tokens or FakeTokens(),
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(0),
        **kw,  # type: ignore[arg-type]
    )


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("http://graph.microsoft.com/v1.0", "must be an absolute https URL"),
        ("graph.microsoft.com/v1.0", "must be an absolute https URL"),
        ("https://graph.microsoft.com/v1.0?x=1", "must not carry a query"),
    ],
)
def test_base_url_must_be_https(base: str, message: str) -> None:
    with pytest.raises(UnsafeRequestError, match=message):
        ApiClient(base, FakeTokens())


def test_verify_false_is_refused() -> None:
    with pytest.raises(UnsafeRequestError, match="cannot be turned off"):
        ApiClient(BASE, FakeTokens(), verify=False)


def test_bad_throttle_priority_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be Low, Normal or High"):
        ApiClient(BASE, FakeTokens(), throttle_priority="Lowest")


# -- headers, token, request ids -------------------------------------------------------


async def test_headers_token_request_id_and_priority() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _json(200, {"id": "me"})

    async with _client(handler, FakeClock(), throttle_priority="Low") as client:
        assert await client.get_json("/users/me") == {"id": "me"}
        await client.get_json("users/me")
    assert [str(r.url) for r in seen] == [BASE + "/users/me"] * 2
    assert seen[0].headers["authorization"] == "Bearer token-0"
    assert seen[0].headers["x-ms-throttle-priority"] == "Low"
    ids = [r.headers["client-request-id"] for r in seen]
    assert len(set(ids)) == 2
    assert all(uuid.UUID(i).version == 4 for i in ids)


async def test_token_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def handler(request: httpx.Request) -> httpx.Response:
        return _json(503, {"error": {"code": "x", "message": "down"}})

    tokens = FakeTokens()
    async with _client(handler, FakeClock(), tokens, retry=RetryPolicy(max_attempts=2)) as c:
        response = await c.request("GET", "/users")
    assert response.status == 503
    assert "token-0" not in caplog.text
    assert "Bearer" not in caplog.text
    assert response.request_id in caplog.text  # failures name the client-request-id


async def test_caller_authorization_header_refused() -> None:
    async with _client(lambda r: _json(200, {}), FakeClock()) as client:
        with pytest.raises(UnsafeRequestError, match="must not set the Authorization"):
            await client.request("GET", "/users", headers={"authorization": "Bearer x"})


# -- 401 -------------------------------------------------------------------------------


async def test_401_once_forces_one_refresh_then_succeeds() -> None:
    graph = FakeGraph()
    graph.users["u1"] = {"id": "u1"}
    graph.unauthorized_tokens.add("token-0")
    tokens = FakeTokens()
    async with make_client(graph, tokens) as client:
        assert await client.get_json("/users/u1") == {"id": "u1"}
    assert tokens.calls == [False, True]
    assert [r.headers["authorization"] for r in graph.requests] == [
        "Bearer token-0",
        "Bearer token-1",
    ]


async def test_401_twice_gives_up_after_one_refresh() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        return _json(401, {"error": {"code": "InvalidAuthenticationToken", "message": "no"}})

    tokens = FakeTokens()
    async with _client(handler, FakeClock(), tokens) as client:
        with pytest.raises(ApiResponseError, match="HTTP 401 InvalidAuthenticationToken") as info:
            await client.get_json("/users")
    assert info.value.status == 401
    assert tokens.calls == [False, True]
    assert len(calls) == 2


# -- origin safety -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/v1.0/users",
        "http://graph.microsoft.com/v1.0/users",
        "https://graph.microsoft.com:8443/v1.0/users",
        "//evil.example/users",
    ],
)
async def test_other_origin_refused_before_any_request(target: str) -> None:
    sent: list[httpx.Request] = []
    tokens = FakeTokens()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return _json(200, {})

    async with _client(handler, FakeClock(), tokens) as client:
        with pytest.raises(UnsafeRequestError):
            await client.request("GET", target)
    assert sent == []
    assert tokens.calls == []  # not even a token was fetched


async def test_same_origin_absolute_url_allowed() -> None:
    async with _client(lambda r: _json(200, {"ok": True}), FakeClock()) as client:
        assert await client.get_json("https://GRAPH.microsoft.com:443/v1.0/users") == {"ok": True}


async def test_next_link_to_other_host_refused() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return _json(200, {"value": [{"id": 1}], "@odata.nextLink": "https://evil.example/p2"})

    items: list[object] = []
    async with _client(handler, FakeClock()) as client:
        pages = client.paginate("/users")
        items.append(await anext(pages))
        with pytest.raises(UnsafeRequestError, match=r"evil\.example"):
            await anext(pages)
    assert items == [{"id": 1}]
    assert sent == [BASE + "/users"]


async def test_cross_host_redirect_refused_same_host_followed() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        if request.url.path == "/v1.0/moved":
            return httpx.Response(302, headers={"Location": "/v1.0/here"})
        if request.url.path == "/v1.0/away":
            return httpx.Response(307, headers={"Location": "https://evil.example/steal"})
        return _json(200, {"here": True})

    async with _client(handler, FakeClock()) as client:
        assert await client.get_json("/moved") == {"here": True}
        with pytest.raises(UnsafeRequestError, match=r"redirected to https://evil\.example"):
            await client.get_json("/away")
    assert all("evil" not in s for s in sent)


# -- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "750"}, 0.75),
        ({"x-ms-retry-after-ms": "1250"}, 1.25),
    ],
)
async def test_429_waits_retry_after(headers: dict[str, str], expected_wait: float) -> None:
    time = FakeClock()
    arrivals: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        arrivals.append(time.now)
        if len(arrivals) == 1:
            return _json(429, {"error": {"code": "TooManyRequests", "message": "x"}}, headers)
        return _json(200, {"ok": 1})

    async with _client(handler, time) as client:
        assert await client.get_json("/users") == {"ok": 1}
    assert arrivals[1] - arrivals[0] >= expected_wait
    assert time.sleeps == [expected_wait]


async def test_retry_after_http_date() -> None:
    time = FakeClock()
    calls = 0
    when = "Wed, 01 Jan 2099 00:00:00 GMT"

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return _json(503, {}, {"Retry-After": when}) if calls == 1 else _json(200, {})

    policy = RetryPolicy(max_attempts=3, max_total_seconds=1e12)
    async with _client(handler, time, retry=policy) as client:
        await client.get_json("/users")
    assert time.sleeps[0] > 60 * 60 * 24 * 365  # far in the future: waited until then


async def test_retry_bounded_by_attempts() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return _json(429, {}, {"Retry-After": "1"})

    time = FakeClock()
    async with _client(handler, time, retry=RetryPolicy(max_attempts=3)) as client:
        response = await client.request("GET", "/users")
    assert response.status == 429
    assert response.attempts == 3
    assert calls == 3


async def test_retry_bounded_by_total_time() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return _json(503, {}, {"Retry-After": "4"})

    policy = RetryPolicy(max_attempts=100, max_total_seconds=10.0)
    async with _client(handler, FakeClock(), retry=policy) as client:
        response = await client.request("GET", "/users")
    assert response.status == 503
    assert calls == 3  # waits 4 + 4; a third wait would end at 12 s > 10 s


async def test_wait_false_skips_waiting_but_counts() -> None:
    time = FakeClock()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return _json(429, {}, {"Retry-After": "4"})

    policy = RetryPolicy(max_attempts=100, max_total_seconds=10.0, wait=False)
    async with _client(handler, time, retry=policy) as client:
        await client.request("GET", "/users")
    assert time.sleeps == []
    assert calls == 3  # the skipped waits still count toward the 10 s bound


async def test_post_not_resent_after_5xx() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return _json(504, {"error": {"code": "GatewayTimeout", "message": "late"}})

    async with _client(handler, FakeClock()) as client:
        response = await client.request("POST", "/users", json={"a": 1})
        assert response.outcome_unknown
        assert response.status == 504
        assert calls == 1
        marked = await client.request("POST", "/users", json={"a": 1}, idempotent=True)
    assert not marked.outcome_unknown
    assert marked.attempts == client.retry.max_attempts  # marked idempotent: retried
    assert calls == 1 + marked.attempts


async def test_post_resent_after_429() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return _json(429, {}, {"Retry-After": "0.5"}) if calls == 1 else _json(201, {"id": "n"})

    async with _client(handler, FakeClock()) as client:
        response = await client.request("POST", "/users", json={})
    assert response.status == 201
    assert calls == 2


async def test_post_read_timeout_is_outcome_unknown() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("slow", request=request)

    async with _client(handler, FakeClock()) as client:
        with pytest.raises(ApiTransportError, match="may have been applied") as info:
            await client.request("POST", "/users", json={})
    assert info.value.outcome_unknown
    assert calls == 1


async def test_get_read_timeout_and_reset_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if calls == 2:
            raise httpx.RemoteProtocolError("reset", request=request)
        return _json(200, {"ok": True})

    async with _client(handler, FakeClock()) as client:
        assert await client.get_json("/users") == {"ok": True}
    assert calls == 3


async def test_post_connect_error_retried_then_transport_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    async with _client(handler, FakeClock(), retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(ApiTransportError) as info:
            await client.request("POST", "/users", json={})
    assert calls == 3
    assert not info.value.outcome_unknown


# -- paging and delta -------------------------------------------------------------------


async def test_paginate_follows_next_links_through_empty_pages() -> None:
    graph_pages = {
        "/v1.0/users": {"value": [{"id": 1}], "@odata.nextLink": BASE + "/users?page=2"},
        "/v1.0/users?page=2": {"value": [], "@odata.nextLink": BASE + "/users?page=3"},
        "/v1.0/users?page=3": {"value": [], "@odata.nextLink": BASE + "/users?page=4"},
        "/v1.0/users?page=4": {"value": [{"id": 2}, {"id": 3}]},
    }
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.url.raw_path.decode()
        sent.append(key)
        return _json(200, graph_pages[key])

    async with _client(handler, FakeClock()) as client:
        items = [item async for item in client.paginate("/users")]
    assert items == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert len(sent) == 4


async def test_paginate_params_only_on_first_page() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        if len(sent) == 1:
            return _json(
                200, {"value": [{"n": 1}], "@odata.nextLink": BASE + "/users?$skiptoken=a"}
            )
        return _json(200, {"value": [{"n": 2}]})

    async with _client(handler, FakeClock()) as client:
        assert [i async for i in client.paginate("/users", {"$top": "999"})] == [{"n": 1}, {"n": 2}]
    assert "top=999" in sent[0]
    assert sent[1] == BASE + "/users?$skiptoken=a"


async def test_paginate_without_value_is_malformed() -> None:
    async with _client(lambda r: _json(200, {"nope": []}), FakeClock()) as client:
        with pytest.raises(MalformedResponseError, match="no 'value' array"):
            [i async for i in client.paginate("/users")]


async def test_repeated_next_link_is_malformed() -> None:
    loop_link = BASE + "/users?p=2"
    async with _client(
        lambda r: _json(200, {"value": [], "@odata.nextLink": loop_link}), FakeClock()
    ) as client:
        with pytest.raises(MalformedResponseError, match="repeated"):
            [i async for i in client.paginate("/users")]


async def test_delta_runs_to_the_delta_link() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "skiptoken" not in str(request.url):
            return _json(
                200, {"value": [{"id": "a"}], "@odata.nextLink": BASE + "/users/delta?$skiptoken=1"}
            )
        return _json(
            200, {"value": [{"id": "b"}], "@odata.deltaLink": BASE + "/users/delta?$deltatoken=z"}
        )

    async with _client(handler, FakeClock()) as client:
        result = await client.delta("/users/delta")
    assert [i["id"] for i in result.items] == ["a", "b"]
    assert result.delta_link == BASE + "/users/delta?$deltatoken=z"


@pytest.mark.parametrize("code", ["syncStateNotFound", "SyncStateNotFound", "SYNCSTATENOTFOUND"])
async def test_expired_delta_token_raises_dedicated_error(code: str) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return _json(400, {"error": {"code": code, "message": "token expired"}})

    link = BASE + "/users/delta?$deltatoken=old"
    async with _client(handler, FakeClock()) as client:
        with pytest.raises(DeltaTokenExpiredError, match="token expired") as info:
            await client.delta("/users/delta", link)
    assert info.value.status == 400
    assert sent == [link]


async def test_delta_link_to_other_host_refused() -> None:
    async with _client(lambda r: _json(200, {}), FakeClock()) as client:
        with pytest.raises(UnsafeRequestError):
            await client.delta("/users/delta", "https://evil.example/delta?$deltatoken=x")


async def test_delta_without_delta_link_is_malformed() -> None:
    async with _client(lambda r: _json(200, {"value": []}), FakeClock()) as client:
        with pytest.raises(MalformedResponseError, match=r"without an @odata\.deltaLink"):
            await client.delta("/users/delta")


async def test_get_json_non_object_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "application/json"}, content=b"{bad")

    async with _client(handler, FakeClock()) as client:
        with pytest.raises(MalformedResponseError, match="not valid JSON"):
            await client.get_json("/users")


# -- lifetime ---------------------------------------------------------------------------


def test_new_event_loop_gets_a_new_http_client() -> None:
    client = _client(lambda r: _json(200, {"n": 1}), FakeClock())
    first: list[object] = []

    async def call() -> None:
        await client.get_json("/users")
        first.append(client._client)

    asyncio.run(call())
    asyncio.run(call())
    assert first[0] is not first[1]
    asyncio.run(client.aclose())


async def test_closed_client_refuses_requests() -> None:
    client = _client(lambda r: _json(200, {}), FakeClock())
    await client.get_json("/users")
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_json("/users")


async def test_request_body_sent_as_json() -> None:
    bodies: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return _json(201, {"id": "n"})

    async with _client(handler, FakeClock()) as client:
        response = await client.request("POST", "/users", json={"displayName": "A"})
    assert response.status == 201
    assert response.body == {"id": "n"}
    assert bodies == [{"displayName": "A"}]
