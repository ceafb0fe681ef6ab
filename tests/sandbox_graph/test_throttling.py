"""Identity-service throttling: costs, refilling buckets, debt while throttled, headers."""

from __future__ import annotations

import httpx
import pytest

from sandbox.graph import GraphConfig, GraphService
from sandbox.graph.throttle import TokenBucket
from tests.clock import FakeClock

from .conftest import APP, TENANT, TokenFactory
from .test_auth import assert_graph_error


def small(service: GraphService, limit: int = 10, window: float = 1.0) -> None:
    service.config.ru_limits = (limit, limit, limit)
    service.config.ru_window = window


@pytest.mark.parametrize(
    ("url", "params", "cost"),
    [
        ("/v1.0/users", {}, 2),
        ("/v1.0/users", {"$select": "id"}, 1),
        ("/v1.0/users", {"$top": "5"}, 1),  # $top < 20 lowers the cost by one
        ("/v1.0/users", {"$top": "500"}, 2),
        ("/v1.0/users/{user}", {}, 1),
        ("/v1.0/users/{user}", {"$expand": "memberOf"}, 2),
        ("/v1.0/groups/{group}/members", {}, 3),
        ("/v1.0/groups/{group}/members", {"$select": "id"}, 2),
        ("/v1.0/groups", {}, 1),
        ("/v1.0/users/delta", {}, 1),
    ],
)
async def test_costs(
    client: httpx.AsyncClient,
    service: GraphService,
    auth: dict[str, str],
    url: str,
    params: dict[str, str],
    cost: int,
) -> None:
    user = service.directory.add_user(TENANT)
    group = service.directory.add_group(TENANT, "G")
    response = await client.get(
        url.format(user=user["id"], group=group["id"]), params=params, headers=auth
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-ms-resource-unit"] == str(cost)
    assert service.stats.resource_units == cost


async def test_write_costs_one_unit_and_one_write(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    user = service.directory.add_user(TENANT)
    response = await client.patch(
        f"/v1.0/users/{user['id']}", json={"department": "x"}, headers=auth
    )
    assert response.headers["x-ms-resource-unit"] == "1"
    levels = service.api.throttler.snapshot()
    assert levels[f"app_tenant_write/{APP}/{TENANT}"]["level"] == 2999
    assert levels[f"tenant_write/{TENANT}"]["level"] == 17999


async def test_bucket_empties_refills_and_keeps_counting(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str], clock: FakeClock
) -> None:
    small(service)  # 10 RU per second; GET /users costs 2
    for _ in range(5):
        assert (await client.get("/v1.0/users", headers=auth)).status_code == 200
    throttled = await client.get("/v1.0/users", headers=auth)
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "1"  # 0.4 s, rounded up to whole seconds
    scope = f"Tenant_Application/ReadWrite/{APP}/{TENANT}"
    assert throttled.headers["x-ms-throttle-scope"] == scope
    assert throttled.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    event = service.stats.throttle_events[-1]
    assert event.retry_after == pytest.approx(0.4)  # level -2 after the charge; needs +2

    clock.advance(0.1)  # an early retry is charged too: the wait grows
    early = await client.get("/v1.0/users", headers=auth)
    assert early.status_code == 429
    assert service.stats.throttle_events[-1].retry_after == pytest.approx(0.5)
    assert service.stats.retries[-1].early is True

    clock.advance(1.0)  # waited as told: admitted
    assert (await client.get("/v1.0/users", headers=auth)).status_code == 200
    assert service.stats.retries[-1].early is False
    assert [r.early for r in service.stats.retries] == [True, False]
    assert service.stats.throttled == 2
    assert service.stats.resource_units == 16  # throttled requests were charged


async def test_fractional_retry_after(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    small(service)
    service.config.fractional_retry_after = True
    for _ in range(5):
        await client.get("/v1.0/users", headers=auth)
    throttled = await client.get("/v1.0/users", headers=auth)
    assert throttled.headers["Retry-After"] == "0.4"


async def test_limit_percentage_header(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    small(service)
    user = service.directory.add_user(TENANT)
    headers = []
    for _ in range(10):
        response = await client.get(f"/v1.0/users/{user['id']}", headers=auth)
        headers.append(response.headers.get("x-ms-throttle-limit-percentage"))
    assert headers[:8] == [None] * 8  # up to 80% used: no header
    assert headers[8:] == ["0.9", "1.0"]


async def test_throttled_request_is_not_applied(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.config.app_tenant_write_limit = 1
    user = service.directory.add_user(TENANT)
    assert (
        await client.patch(f"/v1.0/users/{user['id']}", json={"department": "a"}, headers=auth)
    ).status_code == 204
    response = await client.patch(
        f"/v1.0/users/{user['id']}", json={"department": "b"}, headers=auth
    )
    assert response.status_code == 429
    assert response.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert service.directory.tenant(TENANT).users[user["id"]]["department"] == "a"
    assert service.stats.writes_applied == 1


async def test_tenant_write_limit_is_shared_by_apps(
    client: httpx.AsyncClient, service: GraphService, token: TokenFactory
) -> None:
    service.config.tenant_write_limit = 3
    user = service.directory.add_user(TENANT)
    other_app = "44444444-4444-4444-4444-444444444444"
    statuses = []
    for app in (APP, other_app, APP, other_app):
        headers = {"Authorization": f"Bearer {token(app=app)}"}
        response = await client.patch(
            f"/v1.0/users/{user['id']}", json={"city": app}, headers=headers
        )
        statuses.append(response.status_code)
    assert statuses == [204, 204, 204, 429]
    assert response.headers["x-ms-throttle-scope"] == f"Tenant/Write/{other_app}/{TENANT}"


async def test_budget_depends_on_tenant_size(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.config.ru_limits = (2, 4, 6)
    service.config.size_thresholds = (5, 10)
    service.directory.seed_users(TENANT, 7)  # medium: 4 RU per 10 s
    results = [(await client.get("/v1.0/users", headers=auth)).status_code for _ in range(3)]
    assert results == [200, 200, 429]


async def test_buckets_are_per_app_and_tenant(
    client: httpx.AsyncClient, service: GraphService, token: TokenFactory
) -> None:
    small(service, limit=2)
    first = {"Authorization": f"Bearer {token()}"}
    other = {"Authorization": f"Bearer {token(tenant='55555555-5555-5555-5555-555555555555')}"}
    assert (await client.get("/v1.0/users", headers=first)).status_code == 200
    assert (await client.get("/v1.0/users", headers=first)).status_code == 429
    assert (await client.get("/v1.0/users", headers=other)).status_code == 200


def test_token_bucket_math() -> None:
    bucket = TokenBucket(limit=10, window=2.0, level=10, updated=0.0)
    assert bucket.rate == 5
    bucket.level = -5
    assert bucket.wait_for(1) == pytest.approx(1.2)
    bucket.refill(1.0)
    assert bucket.level == pytest.approx(0.0)
    bucket.refill(100.0)
    assert bucket.level == 10  # never above the limit


def test_scaled_config() -> None:
    config = GraphConfig().scaled(budget=0.01, time=0.1)
    assert config.ru_limits == (35, 50, 80)
    assert config.ru_window == pytest.approx(1.0)
    assert config.app_tenant_write_limit == 30
    assert config.app_tenant_write_window == pytest.approx(15.0)
    assert config.ru_limit_for(10) == 35
    assert config.ru_limit_for(501) == 80
    with pytest.raises(ValueError, match="unknown field"):
        config.update({"nope": 1})
