from __future__ import annotations

from typing import Any

import pytest

from shared.webapi.operations import (
    Cost,
    CreateIdentity,
    Operation,
    estimate_cost,
    validate_operations,
)
from shared.webapi.urls import BaseUrl

BASE = BaseUrl("https://graph.microsoft.com/v1.0")


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("PATCH", "/users/1", Cost(writes=1, resource_units=1)),
        ("GET", "/users", Cost(0, 2)),
        ("GET", "/users?$select=id", Cost(0, 1)),
        ("GET", "/groups/g/members", Cost(0, 3)),
        ("GET", "/groups/g/members?$expand=manager", Cost(0, 4)),
        ("GET", "/organization", Cost(0, 1)),
        ("GET", "/organization?$select=id", Cost(0, 1)),
    ],
)
def test_estimate_cost(method: str, url: str, expected: Cost) -> None:
    assert estimate_cost(method, url) == expected


def test_valid_operations_are_normalised() -> None:
    ops = [
        Operation("a", "get", "users/1"),
        Operation("b", "PATCH", "https://graph.microsoft.com/v1.0/users/2", body={"x": 1}),
    ]
    prepared, errors = validate_operations(ops, BASE)
    assert errors == {}
    assert [(p.method, p.url, p.resendable) for p in prepared] == [
        ("GET", "/users/1", True),
        ("PATCH", "/users/2", True),
    ]


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (Operation("x", "GET", "https://evil.example/users"), "refused to send the token"),
        (Operation("x", "GET", "//evil.example/users"), "scheme-relative"),
        (Operation("x", "GET", "https://graph.microsoft.com/beta/users"), "outside the base"),
        (Operation("x", "FETCH", "/users"), "method 'FETCH'"),
        (Operation("x", "GET", ""), "url is missing"),
        (Operation("x", "GET", "/users", body={"a": 1}), "body is not allowed with GET"),
        (Operation("x", "DELETE", "/users/1", body={"a": 1}), "not allowed with DELETE"),
        (Operation("x", "PUT", "/photo", body=b"raw"), "bytes body needs a Content-Type"),
        (Operation("x", "GET", "/users", headers={"Authorization": "x"}), "Authorization"),
        (Operation("x", "GET", "/users\r\nX: y"), "control characters"),
        (Operation("x", "GET", "/u", depends_on=("x",)), "depends on itself"),
        (Operation("x", "GET", "/u", depends_on=("nope",)), "unknown operation(s) 'nope'"),
        (
            Operation("x", "PATCH", "/u", idempotency=CreateIdentity("/users", "a", "b")),
            "POST creates only",
        ),
        (
            Operation("x", "POST", "/u", idempotency=CreateIdentity("https://e.x/u", "a", "b")),
            "refused to send the token",
        ),
        (Operation("", "GET", "/users"), "id must be a non-empty string"),
    ],
)
def test_malformed_operation_fails_alone(op: Operation, message: str) -> None:
    ops = [Operation("ok1", "GET", "/users/1"), op, Operation("ok2", "GET", "/users/2")]
    prepared, errors = validate_operations(ops, BASE)
    assert [p.id for p in prepared] == ["ok1", "ok2"]
    assert list(errors) == [1]
    assert message in errors[1]


def test_duplicate_id_later_fails() -> None:
    ops = [Operation("a", "GET", "/u/1"), Operation("a", "GET", "/u/2")]
    prepared, errors = validate_operations(ops, BASE)
    assert [p.url for p in prepared] == ["/u/1"]
    assert "duplicate id (first at #0)" in errors[1]


def test_cycle_fails_members_and_dependants_only() -> None:
    ops = [
        Operation("a", "GET", "/a", depends_on=("b",)),
        Operation("b", "GET", "/b", depends_on=("a",)),
        Operation("c", "GET", "/c", depends_on=("a",)),
        Operation("d", "GET", "/d"),
    ]
    prepared, errors = validate_operations(ops, BASE)
    assert [p.id for p in prepared] == ["d"]
    assert "cycle" in errors[0]
    assert "cycle" in errors[1]
    assert "depends on 'a', which is invalid" in errors[2]


def test_dependant_of_invalid_fails_too() -> None:
    ops = [Operation("a", "BAD", "/a"), Operation("b", "GET", "/b", depends_on=("a",))]
    _, errors = validate_operations(ops, BASE)
    assert "depends on 'a', which is invalid and was not sent" in errors[1]


def test_create_identity_matching() -> None:
    ident = CreateIdentity("/users", "userPrincipalName", "Ann@x.com", case_sensitive=False)
    assert ident.matches({"userPrincipalName": "ann@X.com"})
    assert not ident.matches({"userPrincipalName": "bob@x.com"})
    assert not ident.matches("nope")
    assert not CreateIdentity("/users", "employeeId", "E1").matches({"employeeId": "e1"})


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"a": [1, {"b": "x\udfff"}]}, "body['a'][1]['b'] contains a lone surrogate"),
        ({"n": float("nan")}, "body['n'] is nan"),
        ({"n": float("-inf")}, "body['n'] is -inf"),
        ({"k\ud800": 1}, "key 'k\\ud800' contains a lone surrogate"),
        ({1: "x"}, "body has a non-string key 1"),
        ({"s": {1, 2}}, "body['s'] is a set"),
        ({"i": 10**5000}, "body['i'] is an integer too long for JSON"),
    ],
)
def test_bodies_that_cannot_be_encoded_fail_validation_naming_where(body: Any, where: str) -> None:
    ops = [Operation("bad", "PATCH", "/users/u1", body), Operation("ok", "PATCH", "/users/u2", {})]
    prepared, errors = validate_operations(ops, BaseUrl("https://graph.microsoft.com/v1.0"))
    assert [p.id for p in prepared] == ["ok"]
    assert where in errors[0]
    assert errors[0].startswith("operation 'bad': ")


def test_a_text_or_bytes_body_is_not_checked_as_json() -> None:
    ops = [
        Operation("t", "PUT", "/x", "text", headers={"Content-Type": "text/plain"}),
        Operation("b", "PUT", "/y", b"\xff", headers={"Content-Type": "image/png"}),
    ]
    prepared, errors = validate_operations(ops, BaseUrl("https://graph.microsoft.com/v1.0"))
    assert errors == {}
    assert len(prepared) == 2


def test_the_first_problem_in_check_order_is_reported() -> None:
    # method before url, url before headers, headers before body, body before depends_on
    ops = [
        Operation("m", "FETCH", "", headers={"Authorization": "x"}),
        Operation("u", "GET", "", headers={"Authorization": "x"}),
        Operation("h", "GET", "/u", body={"a": 1}, headers={"Authorization": "x"}),
        Operation("b", "GET", "/u", body={"a": 1}, depends_on=("b",)),
    ]
    _, errors = validate_operations(ops, BASE)
    assert "method 'FETCH'" in errors[0]
    assert "url is missing" in errors[1]
    assert "Authorization" in errors[2]
    assert "not allowed with GET" in errors[3]


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (
            Operation(
                "r", "POST", "/groups/g/members/$ref", {"@odata.id": "u"}, reference_from="c"
            ),
            "reference_from must name one of depends_on",
        ),
        (
            Operation(
                "r",
                "POST",
                "/groups/g/members/$ref",
                {"x": 1},
                depends_on=("c",),
                reference_from="c",
            ),
            "reference_from must name one of depends_on",
        ),
        (Operation("n", "GET", "/u", cost=Cost(writes=-1)), "cost must not be negative"),
        (
            Operation("i", "POST", "/users", {}, idempotency=CreateIdentity("/users", "", "v")),
            "CreateIdentity.attribute is missing",
        ),
        (Operation("h", "GET", "/u", headers={"X": "a\tb"}), "header 'X' contains control"),
        (Operation("d", "GET", "/u", depends_on=["c"]), "depends_on must be a tuple"),  # type: ignore[arg-type]
    ],
)
def test_named_checks(op: Operation, message: str) -> None:
    ops = [Operation("c", "POST", "/users", {}), op]
    prepared, errors = validate_operations(ops, BASE)
    assert [p.id for p in prepared] == ["c"]
    assert message in errors[1]


def test_not_an_operation_and_transitive_dependants() -> None:
    ops: list[Any] = [
        "nope",
        Operation("a", "GET", "/a", depends_on=("zz",)),
        Operation("b", "GET", "/b", depends_on=("a",)),
        Operation("c", "GET", "/c", depends_on=("b",)),
    ]
    prepared, errors = validate_operations(ops, BASE)
    assert prepared == []
    assert errors[0] == "operation #0 is not an Operation"
    assert "unknown operation(s) 'zz'" in errors[1]
    assert "depends on 'a'" in errors[2]
    assert "depends on 'b'" in errors[3]


def test_reference_add_is_resendable_other_posts_are_not() -> None:
    ops = [
        Operation("c", "POST", "/users", {}),
        Operation("r", "POST", "/groups/g/members/$ref", {"@odata.id": "u"}),
        Operation("n", "POST", "/groups/g/members/$ref", {"@odata.id": "u"}, idempotent=False),
    ]
    prepared, _ = validate_operations(ops, BASE)
    assert [(p.id, p.resendable) for p in prepared] == [("c", False), ("r", True), ("n", False)]
