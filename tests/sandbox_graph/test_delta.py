"""users/delta: initial sync in pages, deltaLink rounds, deletions, token expiry."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox.graph import GraphConfig, GraphService
from tests.clock import FakeClock

from .conftest import TENANT
from .test_auth import assert_graph_error


async def run_delta(
    client: httpx.AsyncClient, auth: dict[str, str], url: str, params: dict[str, str] | None = None
) -> tuple[list[Any], str, int]:
    body = (await client.get(url, params=params, headers=auth)).json()
    items, pages = list(body["value"]), 1
    while "@odata.nextLink" in body:
        assert "$skiptoken=" in body["@odata.nextLink"]
        body = (await client.get(body["@odata.nextLink"], headers=auth)).json()
        items += body["value"]
        pages += 1
    assert "$deltatoken=" in body["@odata.deltaLink"]
    return items, body["@odata.deltaLink"], pages


async def test_initial_sync_then_changes(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.config.delta_page_size = 4
    users = service.directory.seed_users(TENANT, 10)
    items, delta_link, pages = await run_delta(
        client, auth, "/v1.0/users/delta", {"$select": "id,employeeId,accountEnabled"}
    )
    assert pages == 3
    assert {u["id"] for u in items} == {u["id"] for u in users}
    assert set(items[0]) == {"id", "employeeId", "accountEnabled"}

    nothing, delta_link, _ = await run_delta(client, auth, delta_link)
    assert nothing == []

    tenant = service.directory.tenant(TENANT)
    tenant.update_user(users[0]["id"], {"accountEnabled": False})
    tenant.delete_user(users[1]["id"])
    new = service.directory.add_user(TENANT)
    changes, delta_link, _ = await run_delta(client, auth, delta_link)
    by_id = {c["id"]: c for c in changes}
    assert set(by_id) == {users[0]["id"], users[1]["id"], new["id"]}
    assert by_id[users[0]["id"]]["accountEnabled"] is False
    assert by_id[users[1]["id"]] == {"id": users[1]["id"], "@removed": {"reason": "changed"}}
    assert set(by_id[new["id"]]) == {"id", "employeeId", "accountEnabled"}  # $select kept


async def test_delta_token_expires(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str], clock: FakeClock
) -> None:
    service.config.delta_token_lifetime = 60
    service.directory.seed_users(TENANT, 2)
    _, delta_link, _ = await run_delta(client, auth, "/v1.0/users/delta")
    clock.advance(59)
    _, delta_link, _ = await run_delta(client, auth, delta_link)
    clock.advance(61)
    response = await client.get(delta_link, headers=auth)
    error = assert_graph_error(response, 400, "syncStateNotFound")
    assert "delta token is expired" in str(error["message"])


async def test_expire_all_delta_tokens_now(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str], clock: FakeClock
) -> None:
    service.directory.seed_users(TENANT, 2)
    _, delta_link, _ = await run_delta(client, auth, "/v1.0/users/delta")
    clock.advance(1)
    service.expire_delta_tokens()
    assert (await client.get(delta_link, headers=auth)).status_code == 400
    clock.advance(1)  # a full resync works and yields a fresh, valid token
    _, fresh, _ = await run_delta(client, auth, "/v1.0/users/delta")
    assert (await client.get(fresh, headers=auth)).status_code == 200


async def test_deltatoken_latest_and_bogus(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.seed_users(TENANT, 3)
    items, link, _ = await run_delta(client, auth, "/v1.0/users/delta", {"$deltatoken": "latest"})
    assert items == []
    service.directory.add_user(TENANT)
    items, _, _ = await run_delta(client, auth, link)
    assert len(items) == 1
    bogus = await client.get("/v1.0/users/delta", params={"$deltatoken": "nope"}, headers=auth)
    assert_graph_error(bogus, 400, "syncStateNotFound")


def test_configurable_expired_status() -> None:
    config = GraphConfig(delta_expired_status=410, delta_expired_code="SyncStateNotFound")
    assert config.delta_expired_status == 410
