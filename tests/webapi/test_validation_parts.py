"""Unit tests of validation's two self-contained parts: the JSON-body check and the
depends_on graph checks (plain data, no Operation needed)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import UnsafeRequestError
from shared.webapi.dependencies import check_dependencies, fail_dependants
from shared.webapi.jsonbody import check_json_body


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_json_body_depth_limit() -> None:
    check_json_body(_nested(64))
    with pytest.raises(UnsafeRequestError, match="nested more than 64 levels deep"):
        check_json_body(_nested(66))


@pytest.mark.parametrize("body", [None, True, 1, 1.5, "é", {"a": [1, None, {"b": "c"}]}, (1, 2)])
def test_json_bodies_that_encode(body: Any) -> None:
    check_json_body(body)


def _indexed(*ids: str) -> dict[str, tuple[int, str, str]]:
    return {op_id: (i, "GET", f"/{op_id}") for i, op_id in enumerate(ids)}


def test_unknown_ids_then_cycles_in_input_order() -> None:
    checked = _indexed("a", "b", "c", "d")
    graph = {"a": ("b",), "b": ("a",), "c": ("zz", "yy"), "d": ()}
    errors: dict[int, str] = {}
    check_dependencies(checked, graph, errors)
    assert errors == {
        0: "operation 'a': depends_on forms a cycle",
        1: "operation 'b': depends_on forms a cycle",
        2: "operation 'c': depends_on names unknown operation(s) 'zz', 'yy'",
    }


def test_an_already_failed_operation_breaks_no_cycle_check() -> None:
    checked = _indexed("a", "b")
    graph = {"a": ("b",), "b": ("a",)}
    errors = {1: "operation 'b': bad method"}
    check_dependencies(checked, graph, errors)
    assert errors == {1: "operation 'b': bad method"}  # 'a' depends on a failed one instead
    fail_dependants(checked, graph, errors)
    assert errors[0] == "operation 'a': depends on 'b', which is invalid and was not sent"


def test_failures_spread_to_a_fixed_point_whatever_the_order() -> None:
    checked = _indexed("c", "b", "a", "x")  # 'c' comes first but fails last
    graph = {"c": ("b",), "b": ("a",), "a": (), "x": ()}
    errors = {2: "operation 'a': url is missing"}
    fail_dependants(checked, graph, errors)
    assert errors[1].startswith("operation 'b': depends on 'a'")
    assert errors[0].startswith("operation 'c': depends on 'b'")
    assert 3 not in errors
