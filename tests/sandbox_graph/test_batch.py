"""JSON batching rules: envelope validation, per-item results, sequencing, order, 429s."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.graph import GraphService

from .conftest import TENANT
from .test_auth import assert_graph_error

JSON = {"Content-Type": "application/json"}


def get(i: int, url: str = "/users?$select=id") -> dict[str, Any]:
    return {"id": str(i), "method": "GET", "url": url}


def create(i: int, upn: str | None = None, **extra: Any) -> dict[str, Any]:
    nick = f"batch{i}"
    return {
        "id": str(i),
        "method": "POST",
        "url": "/users",
        "headers": JSON,
        "body": {
            "accountEnabled": True,
            "displayName": nick,
            "mailNickname": nick,
            "userPrincipalName": upn or f"{nick}@contoso.example",
            "passwordProfile": {"password": "x-Y-z-12"},
        },
        **extra,
    }


async def batch(
    client: httpx.AsyncClient, auth: dict[str, str], requests: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post("/v1.0/$batch", json={"requests": requests}, headers=auth)


def by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return {item["id"]: item for item in response.json()["responses"]}


@pytest.mark.parametrize(
    ("requests", "fragment"),
    [
        ([get(i) for i in range(21)], "exceeds the limit of 20"),
        ([get(1), get(1)], "Request Id '1' is duplicated"),
        ([{"method": "GET", "url": "/users"}], "'id'"),
        ([{"id": "1", "url": "/users"}], "'method'"),
        ([{"id": "1", "method": "GET"}], "'url'"),
        ([get(1, "https://graph.microsoft.com/v1.0/users")], "must be relative"),
        ([{**get(1), "dependsOn": ["7"]}], "Invalid dependency for request Id '1'"),
        ([{**get(1), "dependsOn": ["2"]}, get(2)], "Invalid dependency for request Id '1'"),
        ([{**get(1), "dependsOn": ["1"]}], "Invalid dependency for request Id '1'"),
        ([get(1), {**get(2), "dependsOn": "1"}], "Invalid dependency for request Id '2'"),
        ([], "empty"),
    ],
)
async def test_envelope_rules(
    client: httpx.AsyncClient,
    service: GraphService,
    auth: dict[str, str],
    requests: list[dict[str, Any]],
    fragment: str,
) -> None:
    response = await batch(client, auth, requests)
    error = assert_graph_error(response, 400, "BadRequest")
    assert fragment in str(error["message"])
    assert service.stats.operations == 0


def chain(*ids: str) -> list[dict[str, Any]]:
    return [
        {**get(int(i)), **({"dependsOn": [ids[k - 1]]} if k else {})} for k, i in enumerate(ids)
    ]


@pytest.mark.parametrize(
    "requests",
    [
        chain("1", "2") + chain("3", "4"),  # two chains side by side
        [*chain("1", "2"), get(3)],  # a chain next to an independent item
        [get(1), get(2), {**get(3), "dependsOn": ["1", "2"]}],  # two roots
        [get(1), {**get(2), "dependsOn": ["1"]}, {**get(3), "dependsOn": ["1"]}],  # a fan-out
        [get(1), get(2), {**get(3), "dependsOn": ["2"]}],  # first item of a chain independent
    ],
)
async def test_batches_neither_fully_sequential_nor_fully_parallel_are_refused_whole(
    client: httpx.AsyncClient,
    service: GraphService,
    auth: dict[str, str],
    requests: list[dict[str, Any]],
) -> None:
    response = await batch(client, auth, requests)
    error = assert_graph_error(response, 400, "BadRequest")
    assert error["message"] == "Batch should be either fully sequential or fully parallel."
    assert service.stats.operations == 0


async def test_not_json_is_400(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.post("/v1.0/$batch", content=b"[]", headers=auth)
    assert_graph_error(response, 400, "BadRequest")


async def test_twenty_items_with_leading_slash_optional(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.seed_users(TENANT, 3)
    requests = [get(i, "users?$select=id" if i % 2 else "/users?$select=id") for i in range(20)]
    results = by_id(await batch(client, auth, requests))
    assert {r["status"] for r in results.values()} == {200}
    assert len(results["0"]["body"]["value"]) == 3
    assert service.stats.batch_items == 20
    assert service.stats.batch_requests == 1


@pytest.mark.parametrize("missing", ["headers", "body"])
async def test_a_write_without_content_type_or_body_fails_the_whole_batch(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str], missing: str
) -> None:
    item = create(1)
    del item[missing]
    response = await batch(client, auth, [create(2), item])
    error = assert_graph_error(response, 400, "BadRequest")
    assert error["message"] == "Write request id : 1 does not contain Content-Type header or body."
    assert service.directory.counts(TENANT)["users"] == 0
    assert service.stats.operations == 0


async def test_each_item_is_evaluated_on_its_own(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.add_user(TENANT, userPrincipalName="taken@contoso.example")
    results = by_id(
        await batch(
            client,
            auth,
            [
                create(1, "taken@contoso.example"),
                create(2),
                get(3, "/users/nobody@contoso.example"),
                get(4, "/widgets"),
                {"id": "5", "method": "POST", "url": "/$batch", "headers": JSON, "body": {}},
            ],
        )
    )
    assert results["1"]["status"] == 400
    assert results["1"]["body"]["error"]["details"][0]["code"] == "ObjectConflict"
    assert results["2"]["status"] == 201
    assert results["3"]["status"] == 404
    assert results["4"]["status"] == 400
    assert results["5"]["status"] == 400
    assert results["2"]["headers"]["x-ms-resource-unit"] == "1"


async def test_depends_on_and_failed_dependency(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.add_user(TENANT, userPrincipalName="taken@contoso.example")
    patch = {
        "id": "2",
        "method": "PATCH",
        "url": "/users/batch1@contoso.example",
        "headers": JSON,
        "body": {"department": "R&D"},
        "dependsOn": ["1"],
    }
    results = by_id(await batch(client, auth, [create(1), patch]))  # fully sequential
    assert results["1"]["status"] == 201
    assert results["2"]["status"] == 204
    user = service.directory.tenant(TENANT).find_user("batch1@contoso.example")
    assert user is not None
    assert user["department"] == "R&D"

    patch_taken = {**patch, "id": "b", "dependsOn": ["a"]}
    chained = {**get(3, "/users/taken@contoso.example"), "id": "c", "dependsOn": ["b"]}
    results = by_id(
        await batch(
            client, auth, [create(1, "taken@contoso.example") | {"id": "a"}, patch_taken, chained]
        )
    )
    assert results["a"]["status"] == 400
    assert results["b"]["status"] == 424
    assert results["c"]["status"] == 424
    assert results["b"]["body"]["error"]["code"] == "FailedDependency"
    assert service.directory.counts(TENANT)["users"] == 2  # taken + batch1


async def test_parallel_items_run_in_no_fixed_order(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    orders = []
    for round_ in range(3):
        requests = [create(i, f"order{round_}x{i}@contoso.example") for i in range(10)]
        results = by_id(await batch(client, auth, requests))
        assert {r["status"] for r in results.values()} == {201}
        created = [
            u["userPrincipalName"]
            for u in service.directory.tenant(TENANT).users.values()
            if u["userPrincipalName"].startswith(f"order{round_}x")
        ]
        orders.append([int(upn.split("x")[1].split("@")[0]) for upn in created])
    assert all(sorted(order) == list(range(10)) for order in orders)
    assert any(order != list(range(10)) for order in orders)


async def test_response_order_is_shuffled(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    orders = set()
    for _ in range(5):
        response = await batch(client, auth, [get(i) for i in range(10)])
        orders.add(tuple(item["id"] for item in response.json()["responses"]))
    assert len(orders) > 1
    service.config.shuffle_batch_responses = False
    response = await batch(client, auth, [get(i) for i in range(10)])
    assert [item["id"] for item in response.json()["responses"]] == [str(i) for i in range(10)]


async def test_throttled_items_inside_a_200(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.config.app_tenant_write_limit = 5
    service.config.app_tenant_write_window = 5.0  # 1 write per second
    response = await batch(client, auth, [create(i) for i in range(8)])
    results = by_id(response)
    statuses = sorted(r["status"] for r in results.values())
    assert statuses == [201] * 5 + [429] * 3
    throttled = [r for r in results.values() if r["status"] == 429]
    for item in throttled:
        assert item["body"]["error"]["code"] == "TooManyRequests"
        assert int(item["headers"]["Retry-After"]) >= 1
        assert item["headers"]["x-ms-throttle-information"] == "WriteLimitExceeded"
        assert item["headers"]["x-ms-throttle-scope"].startswith("Tenant_Application/Write/")
    assert service.directory.counts(TENANT)["users"] == 5
    assert service.stats.throttled == 3
    assert len(service.stats.throttle_events) == 3
    assert all(e.in_batch for e in service.stats.throttle_events)
