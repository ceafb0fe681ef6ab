"""Fault injection: latency, 5xx, outages, revocation, slow responses, connection resets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from sandbox.graph import ConnectionDropped, GraphService
from sandbox.tokens import TokenIssuer
from tests.clock import FakeClock

from .conftest import APP, TENANT, make_app
from .test_auth import assert_graph_error
from .test_batch import batch, by_id, create


async def test_latency_is_async_per_request_and_per_item(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.faults.set(latency_base=0.1)
    start = time.perf_counter()
    responses = await asyncio.gather(*(client.get("/v1.0/users", headers=auth) for _ in range(5)))
    elapsed = time.perf_counter() - start
    assert all(r.status_code == 200 for r in responses)
    assert 0.1 <= elapsed < 0.3  # concurrent sleeps: the event loop was never blocked

    service.faults.set(latency_base=0.0, latency_per_item=0.02)
    by_id(await batch(client, auth, [create(i) for i in range(10)]))
    # a fully parallel batch: every item waits its latency at the same time
    assert service.stats.max_items_in_flight == 10
    assert service.stats.batch_shapes == {"parallel": 1}


async def test_item_5xx_is_not_applied(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.faults.set(error_rate=0.4, seed=7)
    results = by_id(await batch(client, auth, [create(i) for i in range(20)]))
    failed = [r for r in results.values() if r["status"] >= 500]
    created = [r for r in results.values() if r["status"] == 201]
    assert failed
    assert created
    assert len(failed) + len(created) == 20
    assert {r["status"] for r in failed} <= {503, 504}
    assert any("Retry-After" in r["headers"] for r in failed)
    assert service.directory.counts(TENANT)["users"] == len(created)
    assert service.stats.writes_applied == len(created)


async def test_fail_next_top_level(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.faults.set(fail_next=2, error_retry_after=3)
    first = await client.get("/v1.0/users", headers=auth)
    assert_graph_error(first, 503, "ServiceUnavailable")
    assert first.headers["Retry-After"] == "3"
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 503
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 200


async def test_envelope_error(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.faults.set(envelope_error_rate=1.0)
    response = await batch(client, auth, [create(1)])
    assert response.status_code == 503
    assert service.directory.counts(TENANT)["users"] == 0


async def test_outage_window(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str], clock: FakeClock
) -> None:
    service.faults.outage_for(clock(), 10, start_in=5)
    service.faults.set(outage_retry_after=2)
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 200
    clock.advance(5)
    down = await client.get("/v1.0/users", headers=auth)
    assert_graph_error(down, 503, "ServiceUnavailable")
    assert down.headers["Retry-After"] == "2"
    assert (await batch(client, auth, [create(1)])).status_code == 503
    clock.advance(10)
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 200
    assert service.stats.faults["outage"] == 2


async def test_revoke_tokens_at(clock: FakeClock) -> None:
    issuer = TokenIssuer()
    service = GraphService(issuer, clock=clock)
    service.faults.set(revoke_tokens_at=clock() + 5)
    claims = {
        "aud": "https://graph.microsoft.com",
        "tid": TENANT,
        "appid": APP,
        "roles": ["User.Read.All"],
    }
    headers = {"Authorization": f"Bearer {issuer.issue(claims, 3600)[0]}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(service)), base_url="https://g"
    ) as client:
        assert (await client.get("/v1.0/users", headers=headers)).status_code == 200
        clock.advance(5)
        assert (await client.get("/v1.0/users", headers=headers)).status_code == 401
    assert service.stats.faults["revoke"] == 1


async def test_reset_before_and_after_apply(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    body = create(1)["body"]
    service.faults.set(reset_next=1)
    with pytest.raises(ConnectionDropped):
        await client.post("/v1.0/users", json=body, headers=auth)
    assert service.directory.counts(TENANT)["users"] == 0

    service.faults.set(reset_next_after_apply=1)
    with pytest.raises(ConnectionDropped):
        await client.post("/v1.0/users", json=body, headers=auth)
    assert service.directory.counts(TENANT)["users"] == 1  # applied, answer lost
    retry = await client.post("/v1.0/users", json=body, headers=auth)
    assert retry.json()["error"]["details"][0]["code"] == "ObjectConflict"
    assert service.stats.duplicate_creates() == []
    assert service.stats.faults["reset"] == 1
    assert service.stats.faults["reset_after_apply"] == 1


async def test_slow_response_is_applied_first(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.faults.set(slow_next=1, slow_seconds=0.2)
    task = asyncio.ensure_future(client.post("/v1.0/users", json=create(1)["body"], headers=auth))
    await asyncio.sleep(0.1)
    assert service.directory.counts(TENANT)["users"] == 1
    assert not task.done()
    assert (await task).status_code == 201


@contextlib.asynccontextmanager
async def real_server(app: Starlette) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http="h11", log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # up to 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_connection_reset_over_real_http(
    service: GraphService, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="uvicorn.error")
    async with real_server(make_app(service)) as base, httpx.AsyncClient(base_url=base) as client:
        service.faults.set(reset_next=1)
        # a TCP reset: no status line at all (httpx: ReadError "connection reset")
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get("/v1.0/users", headers=auth)
        assert (await client.get("/v1.0/users", headers=auth)).status_code == 200
        service.faults.set(reset_next_after_apply=1)
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.post("/v1.0/users", json=create(1)["body"], headers=auth)
        assert service.directory.counts(TENANT)["users"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_admin_api(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str], clock: FakeClock
) -> None:
    admin = "/_sandbox/graph"
    seeded = await client.post(
        f"{admin}/seed", json={"tenant": TENANT, "users": 4, "leavers": 1, "groups": 1}
    )
    assert seeded.json()["counts"]["users"] == 4
    state = (await client.get(f"{admin}/directory", params={"users": "true"})).json()
    users: list[dict[str, Any]] = state["tenants"][TENANT]["users"]
    assert len(users) == 4
    assert all("passwordProfile" not in u for u in users)

    assert (await client.post(f"{admin}/faults", json={"fail_next": 1})).status_code == 200
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 503
    bad = await client.post(f"{admin}/faults", json={"no_such_fault": 1})
    assert bad.status_code == 400
    await client.post(f"{admin}/faults", json={"outage_seconds": 5})
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 503
    clock.advance(6)

    await client.post(f"{admin}/config", json={"ru_limits": [2, 2, 2]})
    assert service.config.ru_limits == (2, 2, 2)
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 200
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 429
    stats = (await client.get(f"{admin}/stats")).json()
    assert stats["throttled"] == 1
    assert stats["statuses"]["503"] == 1
    assert stats["faults"]["outage"] == 1

    await client.post(f"{admin}/reset")
    assert service.stats.requests == 0
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 200  # buckets reset
    await client.post(f"{admin}/reset", json={"directory": True})
    assert service.directory.tenants == {}
