"""The provision job's validation, read interpretation and planners: pure, no network —
and, at the end, the whole planning step against the sandbox directory (reads only: what
an outage, a long membership list and a configured API base do to a plan)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

from shared.errors import InvalidMessageError, RetryableJobError, SettingError
from shared.instance import current_instance
from shared.jobs.envelope import JobMessage
from shared.jobs.provision import (
    EXPAND_LIMIT,
    CurrentState,
    Person,
    ProvisionJob,
    interpret_reads,
    merge,
    plan_joiner,
    plan_leaver,
    plan_mover,
    plan_person,
    read_operations,
    user_principal_name,
    validate_payload,
)
from shared.jobs.services import job_context
from shared.webapi import Operation, Outcome, Result
from tests.jobs.conftest import Stack

DOMAIN = "contoso.example"
GRAPH = "https://graph.microsoft.com/v1.0"
USGOV = "https://graph.microsoft.us/v1.0"
TENANT = "11111111-1111-1111-1111-111111111111"
G1 = "aaaaaaaa-0000-0000-0000-000000000001"
G2 = "aaaaaaaa-0000-0000-0000-000000000002"
U1 = "bbbbbbbb-0000-0000-0000-000000000001"
U2 = "bbbbbbbb-0000-0000-0000-000000000002"
# Graph's alias rule: A-Z a-z 0-9 ' . - _ ! # ^ ~, no leading, trailing or double dot
UPN_LOCAL = re.compile(r"^[A-Za-z0-9'_!#^~-]+(\.[A-Za-z0-9'_!#^~-]+)*$")


def validate(**payload: Any) -> tuple[list[Person], list[str]]:
    out = validate_payload(payload, domain=DOMAIN)
    return out.people, out.problems


def one(kind: str, **fields: Any) -> Person:
    people, problems = validate(**{kind + "s": [fields]})
    assert problems == []
    [person] = people
    return person


def user(uid: str = U1, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": uid,
        "userPrincipalName": f"someone.{uid[:4]}@{DOMAIN}",
        "employeeId": "E1",
        "accountEnabled": True,
        "displayName": "Ada Lovelace",
        "givenName": "Ada",
        "surname": "Lovelace",
        "department": None,
        "jobTitle": None,
        "officeLocation": None,
        "memberOf": [],
    }
    base.update(fields)
    return base


def ops(plan: Any) -> list[tuple[str, str, Any]]:
    return [(op.method, op.url, op.body) for op, _ in plan.steps]


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "fragment"),
    [
        ({"employeeId": "E1", "givenName": "A", "department": "\ud800"}, "lone surrogate"),
        ({"employeeId": "E1", "givenName": "A", "department": float("nan")}, "must be a string"),
        ({"employeeId": "E1", "givenName": "A", "jobTitle": float("inf")}, "must be a string"),
        ({"employeeId": "E1", "givenName": "A", "surname": 7}, "must be a string"),
        ({"employeeId": "E1", "givenName": ["A"]}, "must be a string"),
        ({"employeeId": "E1", "givenName": "A\x00"}, "control character"),
        ({"employeeId": "E1", "givenName": "A\u0085"}, "control character"),
        ({"employeeId": "E1", "givenName": "A\uffff"}, "noncharacter"),
        ({"employeeId": "E1", "givenName": "A", "displayName": ""}, "must not be empty"),
        ({"employeeId": "E1", "givenName": "A", "displayName": "  "}, "must not be empty"),
        ({"employeeId": "E1", "givenName": "A", "displayName": None}, "must not be empty"),
        ({"employeeId": "E1", "givenName": "x" * 65}, "more than Graph's limit of 64"),
        ({"employeeId": "E1", "givenName": "A", "surname": "x" * 65}, "limit of 64"),
        ({"employeeId": "E1", "givenName": "A", "department": "x" * 65}, "limit of 64"),
        ({"employeeId": "E1", "givenName": "A", "jobTitle": "x" * 129}, "limit of 128"),
        ({"employeeId": "E1", "givenName": "A", "officeLocation": "x" * 129}, "limit of 128"),
        ({"employeeId": "E1", "givenName": "A", "displayName": "x" * 257}, "limit of 256"),
        # an astral character is two UTF-16 code units: the stricter count
        ({"employeeId": "E1", "givenName": "\U0001f600" * 33}, "66 characters"),
        ({"employeeId": "E1", "givenName": "", "surname": ""}, "'givenName' or 'surname'"),
        ({"employeeId": "E1"}, "'givenName' or 'surname'"),
        ({"employeeId": "E" * 17, "givenName": "A"}, "'employeeId'"),
        ({"employeeId": "E 1", "givenName": "A"}, "'employeeId'"),
        ({"employeeId": "", "givenName": "A"}, "'employeeId'"),
        ({"employeeId": 12, "givenName": "A"}, "'employeeId' 12"),
        ({"givenName": "A"}, "'employeeId' None"),
        ({"employeeId": "E1", "givenName": "A", "groups": "g"}, "must be a list"),
        ({"employeeId": "E1", "givenName": "A", "groups": ["not-a-guid"]}, "not a group"),
        ({"employeeId": "E1", "givenName": "A", "groups": [float("nan")]}, "not a group"),
        ({"employeeId": "E1", "givenName": "A", "removeGroups": [G1]}, "unknown field"),
        ({"employeeId": "E1", "givenName": "A", "Department": "x"}, "unknown field"),
    ],
)
def test_a_bad_joiner_is_a_problem_naming_it_and_the_field(
    person: dict[str, Any], fragment: str
) -> None:
    good = {"employeeId": "OK1", "givenName": "Grace", "surname": "Hopper"}
    people, problems = validate(joiners=[good, person])
    assert [p.employee_id for p in people] == ["OK1"]  # everyone else goes on
    [problem] = problems
    assert fragment in problem
    assert problem.startswith("joiner ")
    problem.encode("utf-8")  # loggable


@pytest.mark.parametrize(
    ("kind", "person", "fragment"),
    [
        ("mover", {"employeeId": "E2", "groups": [G1], "removeGroups": [G1.upper()]}, "both"),
        ("mover", {"employeeId": "E2", "givenName": "x" * 65}, "limit of 64"),
        ("mover", "E2", "must be an object"),
        ("leaver", {"id": "nope"}, "not a user object id"),
        ("leaver", {"id": U1, "employeeId": "E3"}, "not both"),
        ("leaver", {"employeeId": "E3", "department": "x"}, "unknown field"),
        ("leaver", None, "must be an object"),
    ],
)
def test_bad_movers_and_leavers(kind: str, person: Any, fragment: str) -> None:
    people, problems = validate(**{kind + "s": [person, {"employeeId": "OK"}]})
    assert [p.employee_id for p in people] == ["OK"]
    [problem] = problems
    assert fragment in problem
    assert problem.startswith(f"{kind} ")


def test_the_same_person_twice_plans_neither() -> None:
    people, problems = validate(
        joiners=[{"employeeId": "FZ77", "givenName": "A"}],
        movers=[{"employeeId": "fz77", "department": "x"}, {"employeeId": "E5"}],
        leavers=[{"id": U1}, {"id": U1.upper()}],
    )
    assert [p.key for p in people] == ["E5"]
    assert len(problems) == 2
    assert "appears 2 times" in problems[0]
    assert "joiner, mover" in problems[0]


def test_values_are_normalised_and_empty_optional_values_mean_clear() -> None:
    mover = one(
        "mover",
        employeeId="E2",
        department="  Sales ",
        jobTitle="",
        officeLocation=None,
        displayName="Zoe\u0308",  # decomposed: stored as NFC
        groups=[G1.upper(), G1],
    )
    assert mover.attributes == {
        "department": "Sales",
        "jobTitle": None,
        "officeLocation": None,
        "displayName": "Zo\u00eb",
    }
    assert mover.groups == (G1,)


def test_payload_shape_errors_are_invalid_messages() -> None:
    with pytest.raises(InvalidMessageError, match="unknown payload fields"):
        validate_payload({"joiner": []}, domain=DOMAIN)
    with pytest.raises(InvalidMessageError, match="must be a list"):
        validate_payload({"joiners": {}}, domain=DOMAIN)
    with pytest.raises(InvalidMessageError, match="more than 200"):
        validate_payload({"leavers": [{"employeeId": f"E{i}"} for i in range(201)]}, domain=DOMAIN)


def test_joiners_need_the_user_domain_setting() -> None:
    with pytest.raises(SettingError, match="DAEMON_USER_DOMAIN"):
        validate_payload({"joiners": [{"employeeId": "E1", "givenName": "A"}]}, domain=None)
    # movers and leavers do not
    assert validate_payload({"leavers": [{"employeeId": "E1"}]}, domain=None).people


# -- user principal names -----------------------------------------------------------------


def test_upn_is_injective_over_employee_ids_and_follows_graphs_rules() -> None:
    alphabet = "aZ09._-"
    ids = ["".join(p) for n in (1, 2, 3) for p in itertools.product(alphabet, repeat=n)]
    ids += ["FZ-77", "fz77", "fz.77", "fz_77", "f_dz77", "f.z77", "E" * 16, "_" * 16, "." * 16]
    upns: dict[str, str] = {}
    for employee_id in ids:
        for given, surname in (("Ada", "Lovelace"), ("", "x" * 64), ("Zoë", "")):
            person = {"employeeId": employee_id, "givenName": given, "surname": surname}
            upn = user_principal_name(person, DOMAIN)
            local = upn.split("@")[0]
            assert len(local) <= 64
            assert UPN_LOCAL.match(local), upn
            assert upn == upn.lower()
            folded = employee_id.casefold()
            # the same employee id (case-insensitively) may share a UPN, no other may
            assert upns.setdefault(upn, folded) == folded, (upn, employee_id)
    assert user_principal_name({"employeeId": "FZ-77", "givenName": "A"}, DOMAIN) != (
        user_principal_name({"employeeId": "fz77", "givenName": "A"}, DOMAIN)
    )


# -- reads ----------------------------------------------------------------------------------


def answer(op: Operation, outcome: Outcome, status: int | None, body: Any = None) -> Result:
    error = None if outcome is Outcome.SUCCEEDED else f"HTTP {status}"
    return Result(op.id, outcome, status, body, 1, error=error)


def test_read_operations_per_kind() -> None:
    people, _ = validate(
        joiners=[{"employeeId": "E1", "givenName": "Ada"}],
        movers=[{"employeeId": "O1"}],
        leavers=[{"id": U1}],
    )
    reads = read_operations(people)
    assert [r.id for r in reads] == ["read-0-eid", "read-0-upn", "read-1-eid", "read-2-id"]
    assert all(r.method == "GET" for r in reads)
    assert reads[1].url.startswith(f"/users/ada.e1@{DOMAIN}?")
    assert "$expand=memberOf($select=id)" in reads[0].url
    assert reads[3].url.startswith(f"/users/{U1}?")


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome.GAVE_UP, 503),
        (Outcome.GAVE_UP, 429),
        (Outcome.GAVE_UP, None),
        (Outcome.FAILED, None),  # transport / token / not sent
        (Outcome.FAILED, 500),
        (Outcome.FAILED, 503),
        (Outcome.FAILED, 401),
        (Outcome.FAILED, 403),
    ],
)
def test_a_failed_read_is_retryable_never_a_problem(outcome: Outcome, status: int | None) -> None:
    people, _ = validate(leavers=[{"employeeId": "E1"}, {"employeeId": "E2"}])
    reads = read_operations(people)
    results = [
        answer(reads[0], Outcome.SUCCEEDED, 200, {"value": [user()]}),
        answer(reads[1], outcome, status),
    ]
    with pytest.raises(RetryableJobError, match="1 read"):
        interpret_reads(people, results)


def test_404_and_empty_results_are_answers() -> None:
    people, _ = validate(
        joiners=[{"employeeId": "E1", "givenName": "Ada"}],
        leavers=[{"id": U1}, {"employeeId": "E3"}],
    )
    reads = {r.id: r for r in read_operations(people)}
    results = [
        answer(reads["read-0-eid"], Outcome.SUCCEEDED, 200, {"value": []}),
        answer(reads["read-0-upn"], Outcome.FAILED, 404),
        answer(reads["read-1-id"], Outcome.FAILED, 404),
        answer(reads["read-2-eid"], Outcome.SUCCEEDED, 200, {"value": []}),
    ]
    state, problems = interpret_reads(people, results)
    assert problems == []
    assert state.accounts == {0: [], 1: [], 2: []}
    assert state.upn_owner == {0: None}
    plans = [plan_person(p, state, api_base=GRAPH, tenant=TENANT) for p in people]
    assert [op.method for op, _ in plans[0].steps] == ["POST"]
    assert plans[1].problems == [f"leaver {U1}: no such user"]
    assert plans[2].problems == ["leaver E3: no user with this employeeId"]


def test_a_refused_read_is_that_persons_problem() -> None:
    people, _ = validate(leavers=[{"employeeId": "E1"}, {"employeeId": "E2"}])
    reads = read_operations(people)
    results = [
        answer(reads[0], Outcome.FAILED, 400),
        answer(reads[1], Outcome.SUCCEEDED, 200, {"value": [user()]}),
    ]
    state, problems = interpret_reads(people, results)
    assert problems == ["leaver E1: the directory refused the read: HTTP 400"]
    assert list(state.accounts) == [1]


# -- planners -------------------------------------------------------------------------------


def test_joiner_create_and_group_adds_on_the_configured_api() -> None:
    person = one(
        "joiner", employeeId="E1", givenName="Ada", surname="Lovelace", department="",
        groups=[G1, G2],
    )  # fmt: skip
    plan = plan_joiner(person, [], None, USGOV)
    [create, add1, add2] = [op for op, _ in plan.steps]
    assert create.method == "POST"
    assert create.url == "/users"
    body = create.body
    assert body["userPrincipalName"] == f"ada.lovelace.e1@{DOMAIN}"
    assert body["mailNickname"] == "ada.lovelace.e1"
    assert body["displayName"] == "Ada Lovelace"
    assert "department" not in body  # empty: left out, as Graph would store null
    password = body["passwordProfile"]["password"]
    assert 8 <= len(password) <= 256
    classes = [any(c.islower() for c in password), any(c.isupper() for c in password)]
    classes += [any(c.isdigit() for c in password), any(not c.isalnum() for c in password)]
    assert all(classes)
    assert create.idempotency is not None
    assert create.idempotency.case_sensitive is False
    for add, group in ((add1, G1), (add2, G2)):
        assert add.url == f"/groups/{group}/members/$ref"
        assert add.body == {"@odata.id": f"{USGOV}/users/ada.lovelace.e1@{DOMAIN}"}
        assert add.depends_on == (create.id,)
    assert "password" not in " ".join(line for _, line in plan.steps)


def test_joiner_that_exists_is_a_mover_and_redelivery_changes_nothing() -> None:
    person = one("joiner", employeeId="E1", givenName="Ada", surname="Lovelace", groups=[G1])
    existing = user(memberOf=[{"id": G1}])
    assert plan_joiner(person, [existing], None, GRAPH).steps == []
    # found by its UPN only (the employeeId index lags): the same person, nothing to do
    assert plan_joiner(person, [], existing, GRAPH).steps == []


def test_joiner_whose_upn_belongs_to_someone_else_is_a_problem() -> None:
    person = one("joiner", employeeId="E1", givenName="Ada", surname="Lovelace")
    taken = user(U2, employeeId="X9")
    plan = plan_joiner(person, [], taken, GRAPH)
    assert plan.steps == []
    [problem] = plan.problems
    assert problem.startswith(f"joiner E1: userPrincipalName ada.lovelace.e1@{DOMAIN}")
    assert "employeeId X9" in problem
    assert "no employeeId" in plan_joiner(person, [], user(U2, employeeId=None), GRAPH).problems[0]


def test_joiner_or_mover_matching_two_accounts_is_ambiguous() -> None:
    joiner = one("joiner", employeeId="E1", givenName="Ada")
    mover = one("mover", employeeId="E1", department="x")
    state = CurrentState(accounts={0: [user(U1), user(U2)]}, upn_owner={0: None})
    for person in (joiner, mover):
        plan = plan_person(person, state, api_base=GRAPH, tenant=TENANT)
        assert plan.steps == []
        assert "2 accounts have this employeeId" in plan.problems[0]


def test_mover_changes_only_what_differs_and_references_by_object_id() -> None:
    person = one(
        "mover", employeeId="E1", department="Sales", jobTitle="", displayName="Ada Lovelace",
        groups=[G1, G2], removeGroups=["cccccccc-0000-0000-0000-000000000003"],
    )  # fmt: skip
    current = user(department="R&D", jobTitle="", memberOf=[{"id": G1.upper()}])
    plan = plan_mover(person, current, USGOV)
    assert ops(plan) == [
        ("PATCH", f"/users/{U1}", {"department": "Sales"}),
        ("POST", f"/groups/{G2}/members/$ref", {"@odata.id": f"{USGOV}/directoryObjects/{U1}"}),
    ]
    # applied: the second delivery plans nothing
    after = user(department="Sales", memberOf=[{"id": G1}, {"id": G2}])
    assert plan_mover(person, after, USGOV).steps == []


def test_mover_clears_an_attribute_with_null_once() -> None:
    person = one("mover", employeeId="E1", jobTitle="")
    assert ops(plan_mover(person, user(jobTitle="Engineer"), GRAPH)) == [
        ("PATCH", f"/users/{U1}", {"jobTitle": None})
    ]
    assert plan_mover(person, user(jobTitle=None), GRAPH).steps == []


def test_mover_removes_only_current_memberships() -> None:
    person = one("mover", employeeId="E1", removeGroups=[G1, G2])
    plan = plan_mover(person, user(memberOf=[{"id": G2}]), GRAPH)
    assert ops(plan) == [("DELETE", f"/groups/{G2}/members/{U1}/$ref", None)]


def test_every_account_of_a_leaver_is_disabled_and_signed_out() -> None:
    person = one("leaver", employeeId="E3")
    accounts = [user(U1), user(U2, accountEnabled=False)]
    plan = plan_leaver(person, accounts, set(), TENANT)
    assert [(op.method, op.url, op.depends_on) for op, _ in plan.steps] == [
        ("PATCH", f"/users/{U1}", ()),
        ("POST", f"/users/{U1}/revokeSignInSessions", (f"disable-{U1}",)),
        ("POST", f"/users/{U2}/revokeSignInSessions", ()),
    ]
    assert plan.revokes == [
        (f"revoke-{U1}", f"revoked/{TENANT}/{U1}"),
        (f"revoke-{U2}", f"revoked/{TENANT}/{U2}"),
    ]
    # both disabled and signed out: nothing left
    done = [user(U1, accountEnabled=False), user(U2, accountEnabled=False)]
    assert plan_leaver(person, done, {U1, U2}, TENANT).steps == []


def test_a_leaver_named_twice_is_planned_once() -> None:
    by_id = one("leaver", id=U1)
    by_eid = one("leaver", employeeId="E1")
    plan, revokes = merge(plan_leaver(p, [user(U1)], set(), TENANT) for p in (by_id, by_eid))
    assert [op.id for op in plan.operations] == [f"disable-{U1}", f"revoke-{U1}"]
    assert len(plan.lines) == 2
    assert revokes == [(f"revoke-{U1}", f"revoked/{TENANT}/{U1}")]


def test_plans_are_json_encodable_strictly() -> None:
    """What reaches $batch must encode with allow_nan=False and as UTF-8."""
    person = one(
        "joiner", employeeId="E.1_x-Y", givenName="Zoë", surname="Ł" * 64,
        department="R&D", jobTitle="工程师", groups=[G1],
    )  # fmt: skip
    plan = plan_joiner(person, [], None, GRAPH)
    for op, line in plan.steps:
        json.dumps(op.body, allow_nan=False).encode("utf-8")
        line.encode("utf-8")


def test_expand_limit_is_graphs_documented_cap() -> None:
    assert EXPAND_LIMIT == 20


# -- the planning step against the sandbox (reads only) -------------------------------------


async def plan_in_sandbox(stack: Stack, payload: dict[str, Any]) -> Any:
    instance = current_instance()
    message = JobMessage.new("provision", stack.seed.home_tenant_id, payload)
    return await ProvisionJob().plan(job_context(instance, message))


async def test_a_refused_read_while_planning_is_retryable_and_writes_nothing(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    [leaver] = stack.graph.directory.seed_users(tenant, 1)
    # every read refused with 403 (as without a consented permission): final at once, so
    # the test does not wait through the engine's backoff as a 503 outage would make it
    stack.graph.faults.set(error_rate=1.0, error_statuses=(403,))
    with pytest.raises(RetryableJobError, match="may succeed later"):
        await plan_in_sandbox(stack, {"leavers": [{"employeeId": leaver["employeeId"]}]})
    assert stack.graph.stats.writes_applied == 0
    stack.graph.faults.set(error_rate=0.0)
    plan = await plan_in_sandbox(stack, {"leavers": [{"employeeId": leaver["employeeId"]}]})
    assert [op.method for op in plan.operations] == ["PATCH", "POST"]
    assert plan.problems == []


async def test_plan_against_the_directory(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    directory = stack.graph.directory
    mover, twin_a, twin_b, holder = directory.seed_users(tenant, 4)
    state = directory.tenant(tenant)
    state.update_user(twin_b["id"], {"employeeId": twin_a["employeeId"]})
    groups = directory.seed_groups(tenant, EXPAND_LIMIT + 5)
    for group in groups[:-1]:  # more than $expand returns: the list is read in full
        directory.add_member(tenant, group["id"], mover["id"])
    base = stack.app_settings["DAEMON_API_BASE_URL"].rstrip("/")
    joiner = {"employeeId": "J-1", "givenName": "Ada", "surname": "Lovelace"}
    upn = user_principal_name(joiner, "contoso.example")
    state.update_user(holder["id"], {"userPrincipalName": upn})
    plan = await plan_in_sandbox(
        stack,
        {
            "joiners": [joiner],
            "movers": [
                {
                    "employeeId": mover["employeeId"],
                    "groups": [groups[0]["id"], groups[-1]["id"]],
                    "removeGroups": [groups[-2]["id"]],
                }
            ],
            "leavers": [{"employeeId": twin_a["employeeId"]}],
        },
    )
    by_id = {op.id: op for op in plan.operations}
    key = mover["employeeId"]
    assert set(by_id) == {
        f"add-{key}-{groups[-1]['id']}",
        f"remove-{key}-{groups[-2]['id']}",
        f"disable-{twin_a['id']}",
        f"revoke-{twin_a['id']}",
        f"disable-{twin_b['id']}",
        f"revoke-{twin_b['id']}",
    }
    add = by_id[f"add-{key}-{groups[-1]['id']}"]
    assert add.body == {"@odata.id": f"{base}/directoryObjects/{mover['id']}"}
    [problem] = plan.problems
    assert problem.startswith(f"joiner J-1: userPrincipalName {upn} already belongs")


def test_a_missing_read_result_is_retryable_never_a_silent_skip() -> None:
    people, _ = validate(joiners=[{"employeeId": "E1", "givenName": "Ada"}])
    reads = read_operations(people)
    with pytest.raises(RetryableJobError, match="no result"):
        interpret_reads(people, [])
    with pytest.raises(RetryableJobError, match="no result"):
        interpret_reads(people, [answer(reads[0], Outcome.SUCCEEDED, 200, {"value": []})])


async def test_applied_then_redelivered_changes_nothing(stack: Stack) -> None:
    """FZ-77 and fz77 are two people with two accounts; empty strings, a cleared attribute,
    every account of a leaver: the second delivery plans no write at all."""
    stack.graph.config.replication_delay = 0.0  # reads see this run's writes: counts only
    tenant = stack.seed.home_tenant_id
    directory = stack.graph.directory
    mover, twin_a, twin_b = directory.seed_users(tenant, 3)
    state = directory.tenant(tenant)
    state.update_user(mover["id"], {"jobTitle": "Engineer"})
    state.update_user(twin_b["id"], {"employeeId": twin_a["employeeId"]})
    group = directory.add_group(tenant, "Team")
    payload = {
        "joiners": [
            {"employeeId": "FZ-77", "givenName": "Fay", "surname": "Zed", "department": "",
             "groups": [group["id"]]},
            {"employeeId": "fz77", "givenName": "Fay", "surname": "Zed", "jobTitle": " Eng ",
             "groups": [group["id"]]},
        ],
        "movers": [{"employeeId": mover["employeeId"], "jobTitle": "", "groups": [group["id"]]}],
        "leavers": [{"employeeId": twin_a["employeeId"]}],
    }  # fmt: skip
    instance = current_instance()
    plan = await plan_in_sandbox(stack, payload)
    assert plan.problems == []
    report = await instance.batch_engine(tenant).run(plan.operations)
    assert [r.operation_id for r in report.results if not r.succeeded] == []
    for after in plan.after:
        await after(report)
    created = [u for u in state.users.values() if u.get("surname") == "Zed"]
    assert sorted(u["userPrincipalName"] for u in created) == [
        "fay.zed.fz-77@contoso.example",
        "fay.zed.fz77@contoso.example",
    ]
    assert all(u["id"] in state.members[group["id"]] for u in [*created, mover])
    assert state.users[mover["id"]].get("jobTitle") in (None, "")
    assert not state.users[twin_a["id"]]["accountEnabled"]
    assert not state.users[twin_b["id"]]["accountEnabled"]

    again = await plan_in_sandbox(stack, payload)
    assert again.problems == []
    assert again.operations == []
