"""$batch: fully parallel (no dependsOn) or fully sequential (item k depends on item k-1).

learn.microsoft.com/graph/json-batching (tip: "a batch should be either fully sequential or
fully parallel"), microsoft-graph-docs #16280. Anything else is refused whole with 400.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import JSON, PASSWORD, Strict, by_id, graph_error


def get(item_id: str, url: str = "/users?$select=id", **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "method": "GET", "url": url, **extra}


def create(item_id: str, alias: str, **extra: Any) -> dict[str, Any]:
    body = {
        "accountEnabled": True,
        "displayName": alias,
        "mailNickname": alias,
        "userPrincipalName": f"{alias}@contoso.example",
        "passwordProfile": {"password": PASSWORD},
    }
    return {
        "id": item_id,
        "method": "POST",
        "url": "/users",
        "headers": JSON,
        "body": body,
        **extra,
    }


def after(item: dict[str, Any], previous: str) -> dict[str, Any]:
    return {**item, "dependsOn": [previous]}


def test_a_fully_parallel_batch_is_accepted(strict: Strict) -> None:
    results = by_id(strict.batch([create(str(i), f"par{i}") for i in range(20)]))
    assert {r["status"] for r in results.values()} == {201}
    assert strict.sandbox.graph.stats.batch_shapes == {"parallel": 1}


def test_a_fully_sequential_batch_is_accepted_and_a_failure_fails_the_rest(
    strict: Strict,
) -> None:
    strict.sandbox.graph.directory.add_user(
        strict.tenant, userPrincipalName="taken@contoso.example"
    )
    patch = {
        "id": "2",
        "method": "PATCH",
        "url": "/users/seq1@contoso.example",
        "headers": JSON,
        "body": {"department": "R&D"},
    }
    ok = by_id(strict.batch([create("1", "seq1"), after(patch, "1")]))
    assert (ok["1"]["status"], ok["2"]["status"]) == (201, 204)

    failing = [
        create("a", "taken"),
        after(get("b"), "a"),
        after(get("c"), "b"),
    ]
    results = by_id(strict.batch(failing))
    assert results["a"]["status"] == 400
    assert results["b"]["status"] == results["c"]["status"] == 424
    assert results["c"]["body"]["error"]["code"] == "FailedDependency"
    assert strict.sandbox.graph.stats.batch_shapes == {"sequential": 2}


@pytest.mark.parametrize(
    "requests",
    [
        # two chains side by side (a joiner's create + add, next to another joiner's)
        [get("1"), after(get("2"), "1"), get("3"), after(get("4"), "3")],
        # a chain next to an independent item
        [get("1"), after(get("2"), "1"), get("3")],
        # an item depending on two earlier ones
        [get("1"), get("2"), {**get("3"), "dependsOn": ["1", "2"]}],
        # two items depending on the same one
        [get("1"), after(get("2"), "1"), after(get("3"), "1")],
        # a chain skipping an item
        [get("1"), get("2"), after(get("3"), "1")],
    ],
    ids=["two-chains", "chain-and-independent", "two-roots", "fan-out", "skip"],
)
def test_any_other_shape_is_refused_whole(strict: Strict, requests: list[dict[str, Any]]) -> None:
    error = graph_error(strict.batch(requests), 400, "BadRequest")
    assert error["message"] == "Batch should be either fully sequential or fully parallel."
    assert strict.sandbox.graph.stats.operations == 0
