"""$batch: a dependsOn must name a request listed earlier in the batch.

Graph answers 400 "Invalid dependency for request Id ..." for the whole batch
(msgraph-sdk-dotnet-core #891); it does not reorder the requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Strict, by_id, graph_error


def get(item_id: str, depends: list[str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "method": "GET", "url": "/users?$select=id"}
    if depends is not None:
        item["dependsOn"] = depends
    return item


def test_a_dependency_on_the_item_listed_just_before_is_accepted(strict: Strict) -> None:
    results = by_id(strict.batch([get("a"), get("b", ["a"]), get("c", ["b"])]))
    assert {r["status"] for r in results.values()} == {200}


@pytest.mark.parametrize(
    ("requests", "offender"),
    [
        ([get("b", ["a"]), get("a")], "b"),  # listed later
        ([get("a"), get("b", ["zz"])], "b"),  # not in the batch
        ([get("a", ["a"])], "a"),  # itself
        ([get("a", [])], None),  # an empty list is no dependency: accepted
    ],
    ids=["later", "missing", "self", "empty"],
)
def test_a_dependency_on_anything_else_is_refused_whole(
    strict: Strict, requests: list[dict[str, Any]], offender: str | None
) -> None:
    response = strict.batch(requests)
    if offender is None:
        assert response.status_code == 200
        return
    error = graph_error(response, 400, "BadRequest")
    assert error["message"].startswith(f"Invalid dependency for request Id '{offender}'")
    assert strict.sandbox.graph.stats.operations == 0
