"""Fuzzing the jobs against the sandbox and Azurite: person attributes through the provision
planner, message bodies through the queue entry point (``handle_queue_message``).

Designed endings only: a message that can never succeed is completed (None), a run returns
its summary, a retryable failure raises RetryableJobError; nothing else escapes. A plan holds
only operations the API can receive (strict JSON, valid UTF-8) and never both adds and removes
the same membership.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.errors import InvalidMessageError, RetryableJobError
from shared.jobs.base import Plan, RunSummary
from shared.jobs.dispatch import handle_queue_message
from shared.jobs.envelope import JobMessage
from shared.jobs.provision import ProvisionJob
from shared.jobs.services import job_context
from tests.fuzz.conftest import Services
from tests.fuzz.strategies import FAST, dumps_lenient, json_values, nested, text_values

T = TypeVar("T")

attribute_values = st.one_of(
    text_values,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
)
employee_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True),
    text_values,
    st.integers(),
)
ATTRIBUTES = ("givenName", "surname", "displayName", "department", "jobTitle", "officeLocation")


def run(services: Services, coro: Awaitable[T]) -> T:
    async def go() -> T:
        try:
            return await coro
        finally:
            await services.instance.api_client().aclose()

    return asyncio.run(go())


def person(draw: st.DrawFn, groups: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"employeeId": draw(employee_ids)}
    for name in draw(st.sets(st.sampled_from(ATTRIBUTES))):
        entry[name] = draw(attribute_values)
    if draw(st.booleans()):
        entry["groups"] = draw(st.lists(st.sampled_from([*groups, "not-a-guid", 7]), max_size=3))
    return entry


@st.composite
def payloads(draw: st.DrawFn, groups: list[str], mover: str) -> dict[str, Any]:
    joiners = [person(draw, groups) for _ in range(draw(st.integers(0, 3)))]
    movers = []
    if draw(st.booleans()):
        moved = person(draw, groups)
        moved["employeeId"] = mover
        moved["removeGroups"] = draw(st.lists(st.sampled_from(groups), max_size=2))
        movers.append(moved)
    return {"joiners": joiners, "movers": movers}


def assert_sendable(plan: Plan) -> None:
    for operation in plan.operations:
        if operation.body is not None:
            text = json.dumps(operation.body, allow_nan=False)  # ValueError on NaN/Infinity
            text.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
    adds = {op.url.split("/")[2] for op in plan.operations if op.url.endswith("/members/$ref")}
    removes = {op.url.split("/")[2] for op in plan.operations if op.method == "DELETE"}
    assert not adds & removes, f"the plan adds and removes the same membership: {adds & removes}"


def plan_for(services: Services, payload: dict[str, Any]) -> Plan | None:
    message = JobMessage.new("provision", services.tenant, payload, correlation_id="fuzz-plan")
    ctx = job_context(services.instance, message)

    async def go() -> Plan | None:
        try:
            return await ProvisionJob().plan(ctx)
        except InvalidMessageError:
            return None

    return run(services, go())


@FAST
@given(data=st.data())
def test_planned_operations_are_sendable(services: Services, data: st.DataObject) -> None:
    payload = data.draw(payloads(services.groups, services.mover_employee_id))
    plan = plan_for(services, payload)
    if plan is not None:
        assert_sendable(plan)


@FAST
@given(data=st.data())
def test_the_planner_only_ends_as_designed(services: Services, data: st.DataObject) -> None:
    payload = data.draw(payloads(services.groups, services.mover_employee_id))
    plan = plan_for(services, payload)  # raises anything but InvalidMessageError: a failure
    if plan is not None:
        assert all(isinstance(p, str) and p for p in plan.problems)


def handle(services: Services, body: bytes | str) -> object:
    async def go() -> object:
        try:
            return await handle_queue_message(
                body, message_id="fuzz", dequeue_count=1, instance=services.instance
            )
        except RetryableJobError as exc:  # the designed "try again later"
            return exc

    return run(services, go())


@FAST
@given(body=st.one_of(st.binary(max_size=512), st.text(max_size=512).map(str.encode)))
@example(body=b"")
@example(body=b"null")
@example(body=b'{"version": 1, "job": "provision"}')
def test_queue_entry_with_arbitrary_bodies(services: Services, body: bytes) -> None:
    handle(services, body)


@FAST
@given(payload=st.dictionaries(st.sampled_from(["joiners", "movers", "leavers", "x"]), json_values))
def test_queue_entry_with_arbitrary_payloads(services: Services, payload: dict[str, Any]) -> None:
    text = dumps_lenient(
        {
            "version": 1,
            "job": "provision",
            "tenant": services.tenant,
            "correlationId": "fuzz-payload",
            "dryRun": True,
            "payload": payload,
        }
    )
    handle(services, text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("kind", ["nested", "integer"])
def test_queue_entry_with_unbounded_json(services: Services, kind: str) -> None:
    value = nested(2000) if kind == "nested" else "9" * 5000
    text = (
        f'{{"version": 1, "job": "provision", "tenant": "{services.tenant}", '
        f'"correlationId": "fuzz-deep", "payload": {{"joiners": {value}}}}}'
    )
    assert handle(services, text.encode()) is None


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzÄÉØ' -", min_size=1, max_size=12).filter(
    lambda s: s.strip() == s != ""
)
_serial = iter(range(1, 1_000_000))


@st.composite
def valid_payloads(draw: st.DrawFn, groups: list[str], mover: str) -> dict[str, Any]:
    joiners = []
    for _ in range(draw(st.integers(1, 3))):
        joiner: dict[str, Any] = {
            "employeeId": f"FZ{next(_serial):06d}",
            "givenName": draw(names),
            "surname": draw(names),
            "groups": draw(st.lists(st.sampled_from(groups), max_size=2, unique=True)),
        }
        for name in draw(st.sets(st.sampled_from(("department", "jobTitle", "officeLocation")))):
            joiner[name] = draw(names)
        joiners.append(joiner)
    wanted = draw(st.lists(st.sampled_from(groups), max_size=2, unique=True))
    movers = [
        {
            "employeeId": mover,
            "department": draw(names),
            "groups": wanted,
            "removeGroups": [g for g in groups if g not in wanted],
        }
    ]
    return {"joiners": joiners, "movers": movers}


@given(data=st.data())
@settings(FAST, max_examples=10)
def test_a_redelivered_message_changes_nothing(services: Services, data: st.DataObject) -> None:
    """Delivered twice at once (inside the sandbox's replication delay, so the second plan
    may not see the first one's creates yet): the directory ends as one delivery leaves it,
    with no object created twice and no membership changed twice."""
    payload = data.draw(valid_payloads(services.groups, services.mover_employee_id))
    body = JobMessage.new(
        "provision", services.tenant, payload, correlation_id="fuzz-redelivery"
    ).to_json()
    stats = services.sandbox.graph.stats
    directory = services.sandbox.graph.directory.tenant(services.tenant)
    before_adds, before_removes = dict(stats.member_adds), dict(stats.member_removes)
    for _ in range(2):
        outcome = handle(services, body)
        assert isinstance(outcome, RunSummary), outcome
        assert outcome.failed == 0, outcome.errors
        assert not outcome.problems, outcome.problems
    for joiner in payload["joiners"]:
        found = [u for u in directory.users.values() if u["employeeId"] == joiner["employeeId"]]
        assert len(found) == 1, f"{joiner['employeeId']}: {len(found)} users"
        key = f"{services.tenant}/{found[0]['userPrincipalName']}"
        assert stats.user_creates[key] == 1, key
        member_of = {g for g, members in directory.members.items() if found[0]["id"] in members}
        assert member_of == set(joiner["groups"])
    (mover,) = payload["movers"]
    member_of = {g for g, members in directory.members.items() if services.mover_id in members}
    assert member_of == set(mover["groups"])
    assert directory.users[services.mover_id]["department"] == mover["department"]
    for counter, before in (
        (stats.member_adds, before_adds),
        (stats.member_removes, before_removes),
    ):
        changed = {k: v - before.get(k, 0) for k, v in counter.items() if v != before.get(k, 0)}
        assert all(v == 1 for v in changed.values()), changed
