"""The provision job's steps against the fake Graph (tests/webapi/fakes.py, an
httpx.MockTransport: no server, virtual time): validate → read current state → plan per
person, and ProvisionJob.plan through the narrow JobContext — no Instance, no storage.

The pure planners on hand-made state are in test_provision_plan.py; here the state is what
the reads of a real batch engine bring back from a directory.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import RetryableJobError
from shared.jobs.base import Plan
from shared.jobs.context import JobContext, JobSettings
from shared.jobs.envelope import JobMessage
from shared.jobs.operations import OperationsJob
from shared.jobs.provision import (
    EXPAND_LIMIT,
    ProvisionJob,
    plan_people,
    read_current_state,
    read_operations,
    user_principal_name,
    validate,
)
from shared.jobs.services import job_context
from shared.settings import Settings
from shared.webapi import BatchEngine, PacingConfig, RetryPolicy
from tests.webapi.fakes import BASE, FakeGraph, Fault, make_client

DOMAIN = "contoso.example"
TENANT = "11111111-1111-1111-1111-111111111111"
G1 = "aaaaaaaa-0000-0000-0000-000000000001"
G2 = "aaaaaaaa-0000-0000-0000-000000000002"
G3 = "aaaaaaaa-0000-0000-0000-000000000003"
U1 = "bbbbbbbb-0000-0000-0000-000000000001"
U2 = "bbbbbbbb-0000-0000-0000-000000000002"
U3 = "bbbbbbbb-0000-0000-0000-000000000003"
SETTINGS = JobSettings(
    user_domain=DOMAIN,
    max_changes_per_run=1000,
    sweep_chunk_size=100,
    operations_allowed_methods=("GET", "PATCH"),
    operations_allowed_paths=("/users/",),
)


class MemoryLedger:
    """The idempotency ledger in a dict (a DoneLedger)."""

    def __init__(self, *done: str) -> None:
        self.done: dict[str, str | None] = dict.fromkeys(done)

    async def is_done(self, key: str) -> bool:
        return key in self.done

    async def mark_done(self, key: str, *, note: str | None = None) -> bool:
        first = key not in self.done
        self.done.setdefault(key, note)
        return first


def context(
    graph: FakeGraph,
    payload: dict[str, Any],
    *,
    ledger: MemoryLedger | None = None,
    settings: JobSettings = SETTINGS,
) -> JobContext:
    """A job's whole world: the fake Graph behind a real client and batch engine."""
    client = make_client(graph, retry=RetryPolicy(max_attempts=3, max_total_seconds=60.0))
    engine = BatchEngine(
        client,
        retry=RetryPolicy(max_attempts=3, max_total_seconds=60.0),
        pacing=PacingConfig(writes_per_second=1e6, resource_units_per_second=1e7),
        replication_seconds=0.0,
        clock=graph.time.clock,
        sleep=graph.time.sleep,
        rng=random.Random(0),
    )
    message = JobMessage.new("provision", TENANT, payload, correlation_id="unit-1")
    return JobContext(
        message=message,
        settings=settings,
        engines=lambda: engine,
        clients=lambda: client,
        store=ledger if ledger is not None else MemoryLedger(),
        clock=graph.time.clock,
    )


def seed_user(graph: FakeGraph, uid: str, employee_id: str, **fields: Any) -> dict[str, Any]:
    user = {
        "id": uid,
        "userPrincipalName": f"user.{uid[-4:]}@{DOMAIN}",
        "employeeId": employee_id,
        "accountEnabled": True,
        "displayName": "Ada Lovelace",
        "givenName": "Ada",
        "surname": "Lovelace",
        **fields,
    }
    graph.users[uid] = user
    return user


def seed_member(graph: FakeGraph, group: str, uid: str) -> None:
    graph.members.setdefault(group, set()).add(f"{BASE}/directoryObjects/{uid}")


def writes(plan: Plan) -> list[tuple[str, str]]:
    return [(op.method, op.url) for op in plan.operations if op.method != "GET"]


def applied_writes(graph: FakeGraph) -> list[tuple[str, str]]:
    return [(method, url) for method, url in graph.applied if method != "GET"]


async def apply(ctx: JobContext, plan: Plan) -> None:
    report = await ctx.engine().run(plan.operations)
    assert [r.operation_id for r in report.results if not r.succeeded] == []
    for after in plan.after:
        await after(report)


# -- the steps, one by one --------------------------------------------------------------------


async def test_read_current_state_finds_accounts_upn_owners_and_memberships() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "M1")
    seed_member(graph, G1, U1)
    joiner = {"employeeId": "J1", "givenName": "Grace", "surname": "Hopper"}
    seed_user(graph, U2, "OTHER", userPrincipalName=user_principal_name(joiner, DOMAIN))
    ctx = context(
        graph,
        {"joiners": [joiner], "movers": [{"employeeId": "M1", "groups": [G2]}]},
    )
    validated = validate(ctx)
    assert validated.problems == []
    state, problems = await read_current_state(ctx, validated.people)
    assert problems == []
    joiner_p, mover_p = validated.people
    assert state.accounts[joiner_p.index] == []  # no account has this employeeId
    owner = state.upn_owner[joiner_p.index]
    assert owner is not None
    assert owner["id"] == U2
    [mover_account] = state.accounts[mover_p.index]
    assert mover_account["id"] == U1
    assert mover_account["memberOf"] == [{"id": G1}]  # from $expand
    assert applied_writes(graph) == []  # reading writes nothing


async def test_a_long_membership_list_is_read_in_full() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "M1")
    groups = [f"cccccccc-0000-0000-0000-{n:012d}" for n in range(EXPAND_LIMIT + 3)]
    for group in groups:
        seed_member(graph, group, U1)
    ctx = context(graph, {"movers": [{"employeeId": "M1", "removeGroups": [groups[-1]]}]})
    validated = validate(ctx)
    state, _ = await read_current_state(ctx, validated.people)
    [account] = state.accounts[validated.people[0].index]
    assert len(account["memberOf"]) == EXPAND_LIMIT + 3
    assert any(r.url.path.endswith(f"/users/{U1}/memberOf") for r in graph.requests)


async def test_a_read_that_may_succeed_later_raises_and_nothing_is_planned() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "L1")
    ctx = context(graph, {"leavers": [{"employeeId": "L1"}]})
    validated = validate(ctx)
    [read] = read_operations(validated.people)
    graph.fault(read.method, read.url, Fault(403))  # no consented permission (yet)
    with pytest.raises(RetryableJobError, match="may succeed later"):
        await ProvisionJob().plan(ctx)
    assert applied_writes(graph) == []


async def test_a_read_refused_for_good_is_that_persons_problem_only() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "L1")
    seed_user(graph, U2, "L2")
    ctx = context(graph, {"leavers": [{"employeeId": "L1"}, {"employeeId": "L2"}]})
    first = read_operations(validate(ctx).people)[0]
    graph.fault(first.method, first.url, Fault(400))
    plan = await ProvisionJob().plan(ctx)
    [problem] = plan.problems
    assert problem.startswith("leaver L1: the directory refused the read")
    assert writes(plan) == [
        ("PATCH", f"/users/{U2}"),
        ("POST", f"/users/{U2}/revokeSignInSessions"),
    ]


async def test_plan_people_puts_validation_and_read_problems_first() -> None:
    graph = FakeGraph()
    ctx = context(graph, {"movers": [{"employeeId": "M1", "jobTitle": "x"}, {"employeeId": 7}]})
    validated = validate(ctx)
    state, _ = await read_current_state(ctx, validated.people)
    plan, revokes = plan_people(validated, state, ["read problem"], api_base=BASE, tenant=TENANT)
    assert plan.problems[0].startswith("mover #2: 'employeeId' 7")
    assert plan.problems[1:] == ["read problem", "mover M1: no user with this employeeId"]
    assert plan.operations == []
    assert revokes == []


# -- joiners ------------------------------------------------------------------------------------


async def test_joiner_is_created_and_added_then_redelivery_changes_nothing() -> None:
    graph = FakeGraph()
    joiner = {"employeeId": "J1", "givenName": "Grace", "surname": "Hopper", "groups": [G1]}
    ctx = context(graph, {"joiners": [joiner]})
    plan = await ProvisionJob().plan(ctx)
    assert plan.problems == []
    create, add = plan.operations
    upn = "grace.hopper.j1@contoso.example"
    assert (create.method, create.url, create.body["userPrincipalName"]) == ("POST", "/users", upn)
    assert add.url == f"/groups/{G1}/members/$ref"
    assert add.reference_from == create.id
    await apply(ctx, plan)
    [created] = [u for u in graph.users.values() if u["employeeId"] == "J1"]
    assert f"{BASE}/directoryObjects/{created['id']}" in graph.members[G1]

    again = await ProvisionJob().plan(context(graph, {"joiners": [joiner]}))
    assert again.problems == []
    assert again.operations == []


async def test_joiner_that_exists_is_planned_as_a_mover() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "J1", jobTitle="Clerk")
    seed_member(graph, G1, U1)
    payload = {
        "joiners": [
            {"employeeId": "J1", "givenName": "Ada", "jobTitle": "Engineer", "groups": [G1, G2]}
        ]
    }
    plan = await ProvisionJob().plan(context(graph, payload))
    assert plan.problems == []
    assert writes(plan) == [("PATCH", f"/users/{U1}"), ("POST", f"/groups/{G2}/members/$ref")]
    assert plan.operations[0].body == {"jobTitle": "Engineer"}  # only what differs


async def test_joiner_found_only_by_its_upn_is_that_joiner() -> None:
    """A lagging $filter index: the employeeId read finds nothing, the UPN read finds the
    account, and its employeeId is the joiner's (compared case-insensitively)."""
    graph = FakeGraph()
    joiner = {"employeeId": "J1", "givenName": "Ada", "surname": "Lovelace", "department": "R&D"}
    seed_user(graph, U1, "j1", userPrincipalName=user_principal_name(joiner, DOMAIN))
    plan = await ProvisionJob().plan(context(graph, {"joiners": [joiner]}))
    assert plan.problems == []
    assert writes(plan) == [("PATCH", f"/users/{U1}")]
    assert plan.operations[0].body == {"department": "R&D"}


async def test_joiner_whose_upn_belongs_to_another_person_is_a_problem() -> None:
    graph = FakeGraph()
    joiner = {"employeeId": "J1", "givenName": "Ada", "surname": "Lovelace"}
    upn = user_principal_name(joiner, DOMAIN)
    seed_user(graph, U1, "X9", userPrincipalName=upn)
    plan = await ProvisionJob().plan(context(graph, {"joiners": [joiner]}))
    assert plan.operations == []
    [problem] = plan.problems
    assert problem == (
        f"joiner J1: userPrincipalName {upn} already belongs to account {U1} "
        "(employeeId X9); not created"
    )


# -- movers -------------------------------------------------------------------------------------


async def test_mover_changes_what_differs_and_only_real_memberships() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "M1", department="Sales", jobTitle="Clerk")
    seed_member(graph, G1, U1)
    seed_member(graph, G3, U1)
    mover = {
        "employeeId": "M1",
        "department": "Sales",  # unchanged: not sent
        "jobTitle": "",  # cleared: sent as null
        "groups": [G1, G2],  # G1 already: only G2 added
        "removeGroups": [G3, "aaaaaaaa-0000-0000-0000-00000000000f"],  # only G3 is real
    }
    ctx = context(graph, {"movers": [mover]})
    plan = await ProvisionJob().plan(ctx)
    assert plan.problems == []
    assert writes(plan) == [
        ("PATCH", f"/users/{U1}"),
        ("POST", f"/groups/{G2}/members/$ref"),
        ("DELETE", f"/groups/{G3}/members/{U1}/$ref"),
    ]
    assert plan.operations[0].body == {"jobTitle": None}
    assert plan.operations[1].body == {"@odata.id": f"{BASE}/directoryObjects/{U1}"}
    await apply(ctx, plan)
    assert graph.users[U1]["jobTitle"] is None
    again = await ProvisionJob().plan(context(graph, {"movers": [mover]}))
    assert again.problems == []
    assert again.operations == []


async def test_mover_without_an_account_is_a_problem() -> None:
    graph = FakeGraph()
    plan = await ProvisionJob().plan(context(graph, {"movers": [{"employeeId": "M404"}]}))
    assert plan.operations == []
    assert plan.problems == ["mover M404: no user with this employeeId"]


@pytest.mark.parametrize("kind", ["joiners", "movers"])
async def test_two_accounts_with_one_employee_id_are_ambiguous(kind: str) -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "D1")
    seed_user(graph, U2, "D1")
    person = {"employeeId": "D1", "givenName": "Ada", "jobTitle": "Engineer"}
    plan = await ProvisionJob().plan(context(graph, {kind: [person]}))
    assert plan.operations == []
    [problem] = plan.problems
    assert "2 accounts have this employeeId" in problem
    assert "ambiguous" in problem
    assert U1 in problem
    assert U2 in problem


# -- leavers ------------------------------------------------------------------------------------


async def test_every_account_of_a_leaver_is_disabled_and_signed_out_once() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "L1")
    seed_user(graph, U2, "L1")  # a duplicate account: a leaver leaves with both
    ledger = MemoryLedger()
    ctx = context(graph, {"leavers": [{"employeeId": "L1"}]}, ledger=ledger)
    plan = await ProvisionJob().plan(ctx)
    assert plan.problems == []
    assert sorted(writes(plan)) == sorted(
        [
            ("PATCH", f"/users/{U1}"),
            ("POST", f"/users/{U1}/revokeSignInSessions"),
            ("PATCH", f"/users/{U2}"),
            ("POST", f"/users/{U2}/revokeSignInSessions"),
        ]
    )
    await apply(ctx, plan)
    assert not graph.users[U1]["accountEnabled"]
    assert not graph.users[U2]["accountEnabled"]
    assert ledger.done == {f"revoked/{TENANT}/{U1}": "unit-1", f"revoked/{TENANT}/{U2}": "unit-1"}

    again = await ProvisionJob().plan(
        context(graph, {"leavers": [{"employeeId": "L1"}]}, ledger=ledger)
    )
    assert again.problems == []
    assert again.operations == []


async def test_a_disabled_leaver_not_yet_signed_out_is_only_signed_out() -> None:
    graph = FakeGraph()
    seed_user(graph, U1, "L1", accountEnabled=False)
    seed_user(graph, U3, "L3", accountEnabled=False)
    ledger = MemoryLedger(f"revoked/{TENANT}/{U3}")
    payload = {"leavers": [{"id": U1}, {"employeeId": "L3"}]}
    plan = await ProvisionJob().plan(context(graph, payload, ledger=ledger))
    assert plan.problems == []
    assert writes(plan) == [("POST", f"/users/{U1}/revokeSignInSessions")]
    assert plan.operations[0].depends_on == ()


async def test_unknown_leavers_are_problems() -> None:
    graph = FakeGraph()
    payload = {"leavers": [{"id": U1}, {"employeeId": "L404"}]}
    plan = await ProvisionJob().plan(context(graph, payload))
    assert plan.operations == []
    assert plan.problems == [
        f"leaver {U1}: no such user",
        "leaver L404: no user with this employeeId",
    ]


# -- the narrow context -------------------------------------------------------------------------


class FakeServices:
    """What the entry points use of an instance; records the tenants asked for."""

    def __init__(self, settings: Settings, graph: FakeGraph) -> None:
        self.settings = settings
        self.graph = graph
        self.tenants: list[str | None] = []
        self.store = MemoryLedger()
        self.clock: Callable[[], float] = graph.time.clock

    def api_client(self, tenant: str | None = None) -> Any:
        self.tenants.append(tenant)
        return make_client(self.graph)

    def batch_engine(self, tenant: str | None = None) -> Any:
        self.tenants.append(tenant)
        return BatchEngine(self.api_client(tenant), clock=self.graph.time.clock)


def test_job_context_carries_the_jobs_settings_and_the_messages_tenant() -> None:
    from shared.settings import load_settings

    settings = load_settings(
        {
            "DAEMON_AUTH_MODE": "client-secret",
            "DAEMON_TENANT_ID": TENANT,
            "DAEMON_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
            "DAEMON_CLIENT_SECRET": "not-a-real-secret",
            "DAEMON_USER_DOMAIN": DOMAIN,
            "DAEMON_MAX_CHANGES_PER_RUN": "7",
        }
    )
    services = FakeServices(settings, FakeGraph())
    message = JobMessage.new("provision", TENANT, {})
    ctx = job_context(services, message)  # type: ignore[arg-type]
    assert ctx.settings == JobSettings.from_settings(settings)
    assert (ctx.settings.user_domain, ctx.settings.max_changes_per_run) == (DOMAIN, 7)
    assert services.tenants == []  # nothing built until the job reads or writes
    ctx.engine()
    assert services.tenants == [TENANT, TENANT]
    assert ctx.store is services.store


async def test_operations_job_reads_its_allow_list_from_the_context() -> None:
    graph = FakeGraph()
    ctx = context(graph, {})
    ctx.message = JobMessage.new(
        "operations",
        TENANT,
        {
            "operations": [
                {"id": "a", "method": "PATCH", "url": f"/users/{U1}", "body": {"jobTitle": "x"}},
                {"id": "b", "method": "PATCH", "url": f"/groups/{G1}", "body": {}},
            ]
        },
    )
    plan = await OperationsJob().plan(ctx)
    assert [op.id for op in plan.operations] == ["a"]
    [problem] = plan.problems
    assert "DAEMON_OPERATIONS_ALLOWED_PATHS" in problem
