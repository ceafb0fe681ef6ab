"""$batch: unsequenced items run concurrently, in no guaranteed order; sequenced items one
after another (learn.microsoft.com/graph/json-batching: "individual requests can be executed
in any order"; dependsOn to sequence them)."""

from __future__ import annotations

from typing import Any

from .conftest import JSON, PASSWORD, Strict, by_id


def create(i: int, prefix: str, depends: str | None = None) -> dict[str, Any]:
    alias = f"{prefix}{i:02d}"
    item: dict[str, Any] = {
        "id": str(i),
        "method": "POST",
        "url": "/users",
        "headers": JSON,
        "body": {
            "accountEnabled": True,
            "displayName": alias,
            "mailNickname": alias,
            "userPrincipalName": f"{alias}@contoso.example",
            "passwordProfile": {"password": PASSWORD},
        },
    }
    if depends is not None:
        item["dependsOn"] = [depends]
    return item


def creation_order(strict: Strict, prefix: str) -> list[int]:
    users = strict.sandbox.graph.directory.tenant(strict.tenant).users.values()
    return [int(u["mailNickname"][len(prefix) :]) for u in users if u["mailNickname"][:1] == prefix]


def test_parallel_items_overlap_and_run_in_a_seeded_random_order(strict: Strict) -> None:
    strict.sandbox.graph.faults.set(latency_per_item=0.01)
    for prefix in ("p", "q"):
        results = by_id(strict.batch([create(i, prefix) for i in range(20)]))
        assert {r["status"] for r in results.values()} == {201}
    orders = [creation_order(strict, "p"), creation_order(strict, "q")]
    assert all(sorted(order) == list(range(20)) for order in orders)
    assert orders[0] != list(range(20)) or orders[1] != list(range(20))
    assert strict.sandbox.graph.stats.max_items_in_flight == 20


def test_sequential_items_run_one_after_another_in_array_order(strict: Strict) -> None:
    strict.sandbox.graph.faults.set(latency_per_item=0.01)
    chain = [create(i, "s", str(i - 1) if i else None) for i in range(10)]
    results = by_id(strict.batch(chain))
    assert {r["status"] for r in results.values()} == {201}
    assert creation_order(strict, "s") == list(range(10))
    assert strict.sandbox.graph.stats.max_items_in_flight == 0  # never concurrent
