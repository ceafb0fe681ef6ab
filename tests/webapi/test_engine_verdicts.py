"""Pure tests of the engine's decisions: what each answer means (``verdicts.py``), what a
batch's answers say about pacing and why an envelope failed (``batch_answer.py``), how a
direct request carries its body (``send.py``), the created-object bookkeeping
(``replication.py``), and the settler acting on a bind's and a read-back's verdicts
against an injected clock (no servers, no sleeping)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from shared.webapi.engine.batch_answer import PacingSignals, envelope_reason
from shared.webapi.engine.bind import settle_bind
from shared.webapi.engine.coalesce import member_add
from shared.webapi.engine.readback import settle_readback
from shared.webapi.engine.replication import (
    eligible,
    record_created,
    reference_created,
    touched_keys,
)
from shared.webapi.engine.report import EngineStats
from shared.webapi.engine.scheduler import ReadyQueue
from shared.webapi.engine.send import batch_cost, direct_content
from shared.webapi.engine.settle import Settler
from shared.webapi.engine.state import Item, Kind, Op, Phase
from shared.webapi.engine.verdicts import (
    Bind,
    Envelope,
    ReadBack,
    Single,
    bind_verdict,
    envelope_verdict,
    readback_verdict,
    single_verdict,
)
from shared.webapi.operations import (
    Cost,
    CreateIdentity,
    Operation,
    Outcome,
    Result,
    validate_operations,
)
from shared.webapi.response import ApiResponse
from shared.webapi.retry import RetryPolicy
from shared.webapi.urls import BaseUrl
from tests.clock import FakeClock

BASE = BaseUrl("https://graph.microsoft.com/v1.0")
REF = "https://graph.microsoft.com/v1.0/directoryObjects/"


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


ALREADY_MEMBER = _error(
    "Request_BadRequest",
    "One or more added object references already exist for the following modified "
    "properties: 'members'.",
)
CONFLICT = _error(
    "Request_BadRequest",
    "Another object with the same value for property userPrincipalName already exists.",
)
OBJECT_CONFLICT = _error("ObjectConflict", "conflict")
MISSING_REF = _error(
    "Request_BadRequest",
    "Resource 'u9' does not exist or one of its queried reference-property objects are "
    "not present.",
)
NOT_FOUND = _error("Request_ResourceNotFound", "Resource 'u9' does not exist.")
FORBIDDEN = _error("Authorization_RequestDenied", "Insufficient privileges.")
BAD = _error("Request_BadRequest", "Invalid value for property 'city'.")


def _ops(*operations: Operation) -> list[Op]:
    prepared, errors = validate_operations(list(operations), BASE)
    assert errors == {}
    return [Op(p, member_add(p)) for p in prepared]


def _add(i: int, group: str = "g1", ref: str | None = None) -> Operation:
    return Operation(
        f"{group}-{i}", "POST", f"/groups/{group}/members/$ref", {"@odata.id": ref or f"{REF}u{i}"}
    )


def _create(emp: str) -> Operation:
    return Operation(
        f"create-{emp}",
        "POST",
        "/users",
        {"employeeId": emp},
        idempotency=CreateIdentity(f"/users?$filter=employeeId eq '{emp}'", "employeeId", emp),
    )


# -- envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "all_isolated", "expected"),
    [
        (200, False, Envelope.ANSWERED),
        (200, True, Envelope.ANSWERED),
        (429, False, Envelope.THROTTLED),
        (429, True, Envelope.THROTTLED),
        (500, False, Envelope.LOST),
        (503, True, Envelope.LOST),
        (504, False, Envelope.LOST),
        (401, False, Envelope.REFUSED),
        (403, False, Envelope.REFUSED),
        (400, True, Envelope.REFUSED),  # already sent alone: nothing left to isolate
        (400, False, Envelope.ISOLATE),
        (404, False, Envelope.ISOLATE),
        (204, False, Envelope.ISOLATE),  # only a 200 envelope carries item answers
    ],
)
def test_envelope_verdict(status: int, all_isolated: bool, expected: Envelope) -> None:
    assert envelope_verdict(status, all_isolated=all_isolated) is expected


def test_envelope_reason_names_status_code_message_and_request_id() -> None:
    answer = ApiResponse(400, httpx.Headers(), BAD, request_id="rid-1")
    assert envelope_reason(answer) == (
        "batch answered HTTP 400 Request_BadRequest: Invalid value for property 'city'. "
        "(client-request-id rid-1)"
    )
    bare = ApiResponse(502, httpx.Headers(), None, request_id="rid-2")
    assert envelope_reason(bare).startswith("batch answered HTTP 502: ")
    assert bare.error_code is None


def test_pacing_signals_keep_the_highest_percentage_and_any_usage_report() -> None:
    signals = PacingSignals()
    assert (signals.percentage, signals.usage) == (None, False)
    signals.add(httpx.Headers({"x-ms-throttle-limit-percentage": "0.85"}))
    assert signals.percentage == pytest.approx(85.0)
    signals.add(httpx.Headers({"x-ms-throttle-limit-percentage": "1.2"}))
    signals.add(httpx.Headers({"x-ms-throttle-limit-percentage": "0.9"}))
    signals.add(httpx.Headers({"x-ms-throttle-limit-percentage": "not a number"}))
    assert signals.percentage == pytest.approx(120.0)
    assert signals.usage is False
    signals.add(httpx.Headers({"x-ms-resource-unit": "1"}))
    signals.add(httpx.Headers())
    assert signals.usage is True


# -- an operation's own request ---------------------------------------------------------


def _single(
    status: int,
    body: Any = None,
    *,
    method: str = "PATCH",
    maybe_applied: bool = False,
    has_identity: bool = False,
) -> Single:
    return single_verdict(
        status, body, method=method, maybe_applied=maybe_applied, has_identity=has_identity
    )


def test_single_verdict_success_resend_and_transient() -> None:
    assert _single(200) is Single.SUCCEEDED
    assert _single(201, {"id": "x"}, method="POST") is Single.SUCCEEDED
    assert _single(204, method="DELETE", maybe_applied=True) is Single.SUCCEEDED
    assert _single(424) is Single.RESEND
    for status in (500, 502, 503, 504):
        assert _single(status, method="POST") is Single.TRANSIENT
    assert _single(501) is Single.FAILED  # not transient
    assert _single(403, FORBIDDEN) is Single.FAILED
    assert _single(400, BAD) is Single.FAILED


def test_single_verdict_already_member_is_done() -> None:
    assert _single(400, ALREADY_MEMBER, method="POST") is Single.ALREADY_MEMBER
    # checked before a conflict: a member add's "already exist" is never read back
    assert _single(400, ALREADY_MEMBER, method="POST", has_identity=True) is (Single.ALREADY_MEMBER)


def test_single_verdict_delete_404_is_done_only_after_a_send_that_may_have_applied() -> None:
    assert _single(404, NOT_FOUND, method="DELETE", maybe_applied=True) is Single.DELETED_EARLIER
    assert _single(404, NOT_FOUND, method="DELETE") is Single.NOT_FOUND
    assert _single(404, NOT_FOUND, method="PATCH", maybe_applied=True) is Single.NOT_FOUND


def test_single_verdict_conflict_is_read_back_only_with_a_create_identity() -> None:
    for body, status in ((CONFLICT, 400), (OBJECT_CONFLICT, 409)):
        assert _single(status, body, method="POST", has_identity=True) is Single.READ_BACK
        assert _single(status, body, method="POST") is Single.FAILED


def test_single_verdict_does_not_exist() -> None:
    assert _single(404) is Single.NOT_FOUND
    assert _single(400, NOT_FOUND) is Single.NOT_FOUND
    assert _single(400, MISSING_REF, method="POST") is Single.NOT_FOUND


# -- a coalesced bind -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (204, None, Bind.SUCCEEDED),
        (200, {}, Bind.SUCCEEDED),
        (503, None, Bind.RETRY),
        (500, None, Bind.RETRY),
        (424, None, Bind.RETRY),
        (400, MISSING_REF, Bind.NOT_FOUND),
        (404, NOT_FOUND, Bind.NOT_FOUND),
        (400, ALREADY_MEMBER, Bind.FALL_BACK),
        (400, BAD, Bind.FALL_BACK),
        (403, FORBIDDEN, Bind.FAILED),
        (409, OBJECT_CONFLICT, Bind.FAILED),
        (501, None, Bind.FAILED),
    ],
)
def test_bind_verdict(status: int, body: Any, expected: Bind) -> None:
    assert bind_verdict(status, body) is expected


# -- a read-back ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "matched", "expected"),
    [
        (200, {"value": [{}]}, 1, ReadBack.RESOLVED),
        (200, {"value": []}, 0, ReadBack.NO_MATCH),
        (200, {"value": [{}, {}]}, 2, ReadBack.SEVERAL),
        (503, None, 0, ReadBack.RETRY),
        (404, NOT_FOUND, 0, ReadBack.NOT_FOUND),
        (400, NOT_FOUND, 0, ReadBack.NOT_FOUND),
        (403, FORBIDDEN, 0, ReadBack.FAILED),
        (400, BAD, 0, ReadBack.FAILED),
    ],
)
def test_readback_verdict(status: int, body: Any, matched: int, expected: ReadBack) -> None:
    assert readback_verdict(status, body, matched) is expected


# -- sending ----------------------------------------------------------------------------


def test_direct_content_json_bytes_and_text() -> None:
    assert direct_content({"a": 1}, {"Content-Type": "application/json"}) == ({"a": 1}, None)
    assert direct_content({"a": 1}, {}) == ({"a": 1}, None)
    assert direct_content(None, {"content-type": "text/plain"}) == (None, None)
    assert direct_content(b"\x00\x01", {}) == (None, b"\x00\x01")
    assert direct_content(bytearray(b"ab"), {"Content-Type": "application/json"}) == (
        None,
        b"ab",
    )
    assert direct_content("é", {"CONTENT-TYPE": "text/plain"}) == (None, "é".encode())
    assert direct_content(12, {"Content-Type": "text/csv"}) == (None, b"12")


def test_batch_cost_sums_items_and_a_bind_is_one_write() -> None:
    adds = _ops(*(_add(i) for i in range(5)))
    patch = _ops(Operation("p", "PATCH", "/users/u1", {"city": "x"}))[0]
    bind = Item(Kind.MEMBERS, adds, "g1")
    cost = batch_cost([bind, Item(Kind.SINGLE, [patch])])
    assert cost == Cost(
        writes=1 + patch.prep.cost.writes,
        resource_units=1 + patch.prep.cost.resource_units,
    )


# -- created objects --------------------------------------------------------------------


def test_created_objects_make_an_operation_eligible_for_replication_retries() -> None:
    created: set[str] = set()
    record_created(created, {"id": "ABC", "userPrincipalName": "New@Contoso.test"})
    record_created(created, {"id": "", "userPrincipalName": 3})
    record_created(created, ["not", "an", "object"])
    assert created == {"abc", "new@contoso.test"}
    add, other = _ops(_add(1, ref=f"{REF}New@contoso.test"), _add(2, group="g2"))
    assert list(touched_keys(add)) == ["groups", "g1", "members", "$ref", "new@contoso.test"]
    assert eligible(created, add)
    assert not eligible(created, other)
    other.after_post = True  # depends on a POST that succeeded in this run
    assert eligible(created, other)


def test_reference_created_points_a_member_add_at_the_new_object_by_id() -> None:
    create, add, keep = _ops(
        _create("E1"), _add(1, ref=f"{REF}e1@contoso.test"), _add(2, ref=f"{REF}e2@contoso.test")
    )
    create.final = Result("create-E1", Outcome.SUCCEEDED, 201, {"id": "id-1"}, 1)
    reference_created(add, create)
    assert add.body_override == {"@odata.id": f"{REF}id-1"}
    assert add.member == ("g1", f"{REF}id-1")
    create.final = Result("create-E1", Outcome.SUCCEEDED, 201, {"no": "id"}, 1)
    reference_created(keep, create)
    assert keep.body_override is None
    assert keep.member == ("g1", f"{REF}e2@contoso.test")


# -- the settler acting on verdicts (injected clock, no waits) --------------------------


def _settler(ops: list[Op], *, replication_seconds: float = 60.0) -> tuple[Settler, ReadyQueue]:
    queue = ReadyQueue()
    settler = Settler(
        queue=queue,
        stats=EngineStats(),
        policy=RetryPolicy(max_attempts=5, max_total_seconds=600.0, wait=False),
        clock=FakeClock(100.0),
        rng=random.Random(0),
        start=100.0,
        replication_seconds=replication_seconds,
        remaining=len(ops),
    )
    for o in ops:
        o.attempts = 1
    return settler, queue


def _queued(queue: ReadyQueue) -> list[str]:
    out = []
    while queue.peek_due(float("inf")) is not None:
        out.append(queue.pop().id)
    return out


def test_a_bind_refused_for_one_member_falls_back_to_one_add_each() -> None:
    ops = _ops(*(_add(i) for i in range(3)))
    s, queue = _settler(ops)
    settle_bind(s, Item(Kind.MEMBERS, ops, "g1"), 400, httpx.Headers(), ALREADY_MEMBER)
    assert s.stats.bind_fallbacks == 1
    assert all(o.solo and o.free_sends == 1 and o.final is None for o in ops)
    assert _queued(queue) == [o.id for o in ops]


def test_a_bind_not_found_retries_while_replicating_and_falls_back_after() -> None:
    ops = _ops(*(_add(i) for i in range(2)))
    s, queue = _settler(ops)
    for o in ops:
        o.after_post = True
    item = Item(Kind.MEMBERS, ops, "g1")
    settle_bind(s, item, 400, httpx.Headers(), MISSING_REF)
    assert s.stats.replication_retries == 2
    assert s.stats.bind_fallbacks == 0
    assert all(o.replication_tries == 1 and not o.solo for o in ops)
    assert len(_queued(queue)) == 2
    ops2 = _ops(*(_add(i) for i in range(2)))
    s_no, _ = _settler(ops2)
    settle_bind(s_no, Item(Kind.MEMBERS, ops2, "g1"), 400, httpx.Headers(), MISSING_REF)
    assert s_no.stats.bind_fallbacks == 1  # nothing created in this run: not replication
    assert all(o.solo for o in ops2)


def test_a_bind_forbidden_fails_every_member() -> None:
    ops = _ops(*(_add(i) for i in range(2)))
    s, _ = _settler(ops)
    settle_bind(s, Item(Kind.MEMBERS, ops, "g1"), 403, httpx.Headers(), FORBIDDEN)
    assert [o.final.outcome if o.final else None for o in ops] == [Outcome.FAILED] * 2
    assert s.remaining == 0


def _conflicted(emp: str) -> tuple[Settler, ReadyQueue, Op]:
    (o,) = _ops(_create(emp))
    s, queue = _settler([o], replication_seconds=0.0)
    s.settle(Item(Kind.SINGLE, [o]), 400, httpx.Headers(), CONFLICT)
    assert o.phase is Phase.READBACK
    assert _queued(queue) == [o.id]
    return s, queue, o


def test_a_read_back_finding_the_object_resolves_the_conflict() -> None:
    s, _, o = _conflicted("E1")
    found = {"value": [{"id": "id-1", "employeeId": "E1"}, {"id": "id-2", "employeeId": "E2"}]}
    settle_readback(s, o, 200, httpx.Headers(), found)
    assert o.final is not None
    assert o.final.outcome is Outcome.SUCCEEDED
    assert o.final.resolved_conflict
    assert o.final.body == {"id": "id-1", "employeeId": "E1"}
    assert s.stats.conflicts_resolved == 1
    assert "id-1" in s.created


def test_a_read_back_finding_nothing_fails_with_the_conflict_once_the_bound_is_over() -> None:
    s, _, o = _conflicted("E1")
    settle_readback(s, o, 200, httpx.Headers(), {"value": []})
    assert o.final is not None
    assert o.final.outcome is Outcome.FAILED
    assert o.final.status == 400
    assert o.final.error_code == "Request_BadRequest"
    assert "read-back" in (o.final.error or "")
    assert "found no object" in (o.final.error or "")


def test_a_read_back_answered_5xx_reads_back_again() -> None:
    s, queue, o = _conflicted("E1")
    settle_readback(s, o, 503, httpx.Headers({"Retry-After": "2"}), None)
    assert o.final is None
    assert o.last_status == 400
    assert "answered HTTP 503" in (o.last_error or "")
    assert _queued(queue) == [o.id]
