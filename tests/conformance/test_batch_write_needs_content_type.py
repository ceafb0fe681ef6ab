"""$batch: a write with a body needs a Content-Type header, else the whole batch is 400.

learn.microsoft.com/graph/json-batching: "When a body is included with the request, the
headers object must contain a value for Content-Type". A write without a body gets the same
answer (the sandbox's stricter reading; Graph's message names both).
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import JSON, Strict, by_id, graph_error


def patch(item_id: str, user: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "method": "PATCH",
        "url": f"/users/{user}",
        "headers": JSON,
        "body": {"department": "Sales"},
        **extra,
    }


def test_writes_with_content_type_are_accepted(strict: Strict) -> None:
    users = strict.sandbox.graph.directory.seed_users(strict.tenant, 2)
    lower = patch("2", users[1]["id"], headers={"content-type": "application/json"})
    results = by_id(strict.batch([patch("1", users[0]["id"]), lower]))
    assert {r["status"] for r in results.values()} == {204}


@pytest.mark.parametrize("missing", ["headers", "body"])
def test_a_write_without_content_type_or_body_fails_the_whole_batch(
    strict: Strict, missing: str
) -> None:
    users = strict.sandbox.graph.directory.seed_users(strict.tenant, 2)
    bad = patch("2", users[1]["id"])
    del bad[missing]
    error = graph_error(strict.batch([patch("1", users[0]["id"]), bad]), 400, "BadRequest")
    assert error["message"] == "Write request id : 2 does not contain Content-Type header or body."
    tenant = strict.sandbox.graph.directory.tenant(strict.tenant)
    assert [tenant.users[u["id"]]["department"] for u in users] == ["Sales", "Sales"]
    assert strict.sandbox.graph.stats.writes_applied == 0  # nothing applied: not even item 1
