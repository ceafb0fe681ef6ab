"""Pure tests: batch items and payloads, member-add detection, the ready queue and filling."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from shared.webapi.engine.batches import batch_item, batch_payload
from shared.webapi.engine.coalesce import member_add
from shared.webapi.engine.scheduler import ReadyQueue, fill
from shared.webapi.engine.state import Kind, Op, Phase
from shared.webapi.operations import CreateIdentity, Operation, validate_operations
from shared.webapi.urls import BaseUrl

BASE = BaseUrl("https://graph.microsoft.com/v1.0")
REF = "https://graph.microsoft.com/v1.0/directoryObjects/"


def _ops(*operations: Operation) -> list[Op]:
    prepared, errors = validate_operations(list(operations), BASE)
    assert errors == {}
    return [Op(p, member_add(p)) for p in prepared]


def _add(i: int, group: str = "g1", **kw: Any) -> Operation:
    return Operation(
        f"{group}-{i}", "POST", f"/groups/{group}/members/$ref", {"@odata.id": f"{REF}u{i}"}, **kw
    )


def _patch(i: int) -> Operation:
    return Operation(f"p{i}", "PATCH", f"/users/u{i}", {"city": "x"})


def test_batch_item_serialises_a_json_body_and_never_depends_on() -> None:
    item = batch_item("2", "PATCH", "/users/u1", body={"city": "Oslo"})
    assert item == {
        "id": "2",
        "method": "PATCH",
        "url": "/users/u1",
        "body": {"city": "Oslo"},
        "headers": {"Content-Type": "application/json"},
    }


def test_batch_item_keeps_callers_content_type() -> None:
    item = batch_item(
        "1", "POST", "/x", body={"a": 1}, headers={"content-type": "application/json"}
    )
    assert item["headers"] == {"content-type": "application/json"}


def test_batch_item_base64_for_non_json_bodies() -> None:
    item = batch_item("1", "PUT", "/photo", body=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert base64.b64decode(item["body"]) == b"\x89PNG"
    text = batch_item("2", "PUT", "/note", body="hi", headers={"Content-Type": "text/plain"})
    assert base64.b64decode(text["body"]) == b"hi"


def test_batch_item_without_body_has_no_headers() -> None:
    assert batch_item("1", "GET", "/users") == {"id": "1", "method": "GET", "url": "/users"}


def test_batch_payload_checks_ids_size_and_refuses_depends_on() -> None:
    with pytest.raises(ValueError, match="duplicate ids"):
        batch_payload([{"id": "1"}, {"id": "1"}])
    with pytest.raises(ValueError, match="exceed the batch limit"):
        batch_payload([{"id": str(i)} for i in range(21)])
    with pytest.raises(ValueError, match="fully parallel"):
        batch_payload([{"id": "1"}, {"id": "2", "dependsOn": ["1"]}])
    assert batch_payload([{"id": "1"}]) == {"requests": [{"id": "1"}]}


def test_member_add_detection() -> None:
    ops = _ops(
        _add(1),
        _add(2, headers={"Content-Type": "application/json"}),
        _add(3, headers={"ConsistencyLevel": "eventual"}),
        _add(4, idempotent=True),
        Operation("q", "POST", "/groups/g1/members/$ref?x=1", {"@odata.id": f"{REF}u5"}),
        Operation("extra", "POST", "/groups/g1/members/$ref", {"@odata.id": f"{REF}u6", "x": 1}),
        Operation("owner", "POST", "/groups/g1/owners/$ref", {"@odata.id": f"{REF}u7"}),
        Operation(
            "c",
            "POST",
            "/groups/g1/members/$ref",
            {"@odata.id": f"{REF}u8"},
            idempotency=CreateIdentity("/users/u8", "id", "u8"),
        ),
    )
    assert [o.member for o in ops] == [
        ("g1", f"{REF}u1"),
        ("g1", f"{REF}u2"),
        None,
        None,
        None,
        None,
        None,
        None,
    ]


def _queue(ops: list[Op], at: float = 0.0, *, coalesce: bool = True) -> ReadyQueue:
    queue = ReadyQueue(coalesce=coalesce)
    for o in ops:
        o.not_before = at
        queue.push(o)
    return queue


def test_fill_coalesces_adds_to_one_group_up_to_20_without_taking_items() -> None:
    ops = _ops(*[_add(i) for i in range(45)], *[_add(i, "g2") for i in range(3)], _patch(1))
    items = fill(_queue(ops), 0.0, 20)
    kinds = [(i.kind, i.group, len(i.ops)) for i in items]
    assert kinds == [
        (Kind.MEMBERS, "g1", 20),
        (Kind.MEMBERS, "g1", 20),
        (Kind.MEMBERS, "g1", 5),
        (Kind.MEMBERS, "g2", 3),
        (Kind.SINGLE, None, 1),
    ]
    method, url, body, headers = items[0].request()
    assert (method, url) == ("PATCH", "/groups/g1")
    assert body == {"members@odata.bind": [f"{REF}u{i}" for i in range(20)]}
    assert headers == {"Content-Type": "application/json"}
    assert items[0].cost.writes == 1


def test_fill_without_coalescing_and_single_member_sent_as_is() -> None:
    ops = _ops(_add(1), _add(2))
    items = fill(_queue(ops, coalesce=False), 0.0, 20)
    assert [i.kind for i in items] == [Kind.SINGLE, Kind.SINGLE]
    lone = fill(_queue(_ops(_add(3))), 0.0, 20)
    assert lone[0].request()[:2] == ("POST", "/groups/g1/members/$ref")


def test_fill_puts_a_reference_once_per_bind() -> None:
    a, b = _ops(
        _add(1), Operation("dup", "POST", "/groups/g1/members/$ref", {"@odata.id": f"{REF}u1"})
    )
    items = fill(_queue([a, b]), 0.0, 20)
    assert [len(i.ops) for i in items] == [1, 1]


def test_fill_takes_only_due_operations_and_honours_the_size() -> None:
    ops = _ops(*[_patch(i) for i in range(30)])
    queue = _queue(ops[:25], 0.0)
    for o in ops[25:]:
        o.not_before = 10.0
        queue.push(o)
    first = fill(queue, 5.0, 20)
    second = fill(queue, 5.0, 20)
    assert [len(first), len(second)] == [20, 5]
    assert fill(queue, 5.0, 20) == []
    assert queue.next_due() == 10.0
    assert len(fill(queue, 10.0, 20)) == 5


def test_fill_isolated_operations_travel_alone_and_readbacks_are_gets() -> None:
    ops = _ops(_patch(1), _patch(2), _patch(3))
    ops[1].isolate = True
    queue = _queue(ops)
    assert [len(b) for b in iter(lambda: fill(queue, 0.0, 20), [])] == [1, 1, 1]
    (create,) = _ops(
        Operation(
            "c",
            "POST",
            "/users",
            {"employeeId": "E1"},
            idempotency=CreateIdentity("/users?$filter=employeeId eq 'E1'", "employeeId", "E1"),
        )
    )
    create.phase = Phase.READBACK
    (item,) = fill(_queue([create]), 0.0, 20)
    assert item.kind is Kind.READBACK
    assert item.request()[:2] == ("GET", "/users?$filter=employeeId eq 'E1'")
    assert item.cost.writes == 0


def test_a_bind_collects_its_groups_adds_from_anywhere_in_the_queue() -> None:
    """Adds to 5 groups interleaved with 200 PATCHes (one every 10): a bind opened by a
    group's first add collects that group's later adds, although they are far behind in
    the queue."""
    ops = []
    for i in range(200):
        ops.append(_patch(i))
        if i % 10 == 0:
            ops.append(_add(i, f"g{i % 50 // 10}"))
    items = fill(_queue(_ops(*ops)), 0.0, 20)
    binds = sorted((i.group, len(i.ops)) for i in items if i.kind is Kind.MEMBERS)
    assert binds == [("g0", 4), ("g1", 4)]  # g2's first add is behind the first 20 items
    assert len(items) == 20  # one item per bind: the rest of the batch is PATCHes
    assert sum(len(i.ops) for i in items) == 18 + 8


def test_queue_serves_fifo_and_delayed_retries_in_time_order() -> None:
    a, b, c = _ops(_patch(1), _patch(2), _patch(3))
    queue = ReadyQueue()
    a.not_before = 5.0  # a retry, due later
    queue.push(a)
    b.not_before = 1.0  # ready now: goes behind the retry in arrival, ahead of it in time
    queue.push(b)
    c.not_before = 1.0
    queue.push(c)
    assert [queue.pop().id for _ in range(3)] == ["p2", "p3", "p1"]
    assert queue.next_due() is None
    a.not_before = 2.0
    queue.push(a)
    a.final = object()  # type: ignore[assignment]  # settled while queued: skipped
    assert queue.peek_due(10.0) is None
    assert len(queue) == 0  # dropped on the way
