"""The engine against Graph's rules, with the strict fake Graph: member adds coalesced (and
their fallback), replication delay, idempotent resends, bodies that cannot be encoded, and a
national-cloud base URL."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.errors import SettingError, TokenRequestError, UnsafeRequestError
from shared.settings import load_settings
from shared.webapi import (
    ApiClient,
    BatchEngine,
    CreateIdentity,
    Operation,
    Outcome,
    PacingConfig,
    RetryPolicy,
    directory_object_url,
    group_url,
    user_url,
)
from tests.webapi.fakes import FakeGraph, Fault, make_client

BASE = "https://graph.microsoft.com/v1.0"


def _engine(graph: FakeGraph, **kw: Any) -> BatchEngine:
    kw.setdefault("retry", RetryPolicy(max_attempts=5, max_total_seconds=600.0, base=0.5))
    return BatchEngine(
        make_client(graph),
        pacing=PacingConfig(writes_per_second=20.0, resource_units_per_second=350.0),
        clock=graph.time.clock,
        sleep=graph.time.sleep,
        rng=random.Random(0),
        **kw,
    )


def _add(op_id: str, group: str, ref: str, *deps: str) -> Operation:
    return Operation(
        op_id,
        "POST",
        f"/groups/{group}/members/$ref",
        {"@odata.id": ref},
        headers={"Content-Type": "application/json"},
        depends_on=deps,
    )


def _joiner(n: int, groups: tuple[str, ...] = ("g1", "g2")) -> list[Operation]:
    emp = f"E{n}"
    upn = f"j{n}@contoso.test"
    create = Operation(
        f"create-{emp}",
        "POST",
        "/users",
        {"employeeId": emp, "userPrincipalName": upn},
        idempotency=CreateIdentity(f"/users?$filter=employeeId eq '{emp}'", "employeeId", emp),
    )
    return [create] + [_add(f"add-{emp}-{g}", g, user_url(BASE, upn), create.id) for g in groups]


def _assert_parallel(graph: FakeGraph) -> None:
    assert graph.refused_batches == 0
    for batch in graph.batches:
        assert 1 <= len(batch) <= 20
        assert all("dependsOn" not in item for item in batch)


# -- coalescing ---------------------------------------------------------------------------


async def test_member_adds_to_one_group_become_one_write_each_keeping_its_result() -> None:
    graph = FakeGraph()
    for i in range(45):
        graph.users[f"u{i}"] = {"id": f"u{i}"}
    ops = [_add(f"a{i}", "g1", directory_object_url(BASE, f"u{i}")) for i in range(45)]
    ops += [_add(f"b{i}", "g2", directory_object_url(BASE, f"u{i}")) for i in range(3)]
    report = await _engine(graph).run(ops)
    assert [r.operation_id for r in report.results] == [o.id for o in ops]
    assert all(r.succeeded and r.status == 204 for r in report.results)
    assert sorted(graph.binds) == [("g1", 5), ("g1", 20), ("g1", 20), ("g2", 3)]
    assert report.stats.member_binds == 4
    assert report.stats.members_coalesced == 48
    assert len(graph.members["g1"]) == 45
    assert set(graph.member_adds.values()) == {1}
    assert [i["method"] for i in graph.batches[0]] == ["PATCH"] * 4
    _assert_parallel(graph)


async def test_coalescing_off_sends_one_add_per_member() -> None:
    graph = FakeGraph()
    ops = [_add(f"a{i}", "g1", directory_object_url(BASE, f"u{i}")) for i in range(5)]
    report = await _engine(graph, coalesce_members=False).run(ops)
    assert report.count(Outcome.SUCCEEDED) == 5
    assert graph.binds == []
    assert report.stats.member_binds == 0
    assert len(graph.members["g1"]) == 5


async def test_bind_refused_for_an_existing_member_falls_back_one_by_one() -> None:
    graph = FakeGraph()
    for i in range(6):
        graph.users[f"u{i}"] = {"id": f"u{i}"}
    graph.members["g1"] = {directory_object_url(BASE, "u3")}
    ops = [_add(f"a{i}", "g1", directory_object_url(BASE, f"u{i}")) for i in range(6)]
    report = await _engine(graph).run(ops)
    results = report.by_id()
    assert all(r.succeeded for r in report.results)
    assert results["a3"].resolved_conflict
    assert not results["a0"].resolved_conflict
    assert results["a0"].attempts == 2  # the refused bind does not count against it
    assert report.stats.bind_fallbacks == 1
    assert graph.binds == []  # the bind was all-or-nothing: nothing applied by it
    assert len(graph.members["g1"]) == 6
    assert set(graph.member_adds.values()) == {1}


async def test_bind_with_a_missing_member_fails_only_that_member() -> None:
    graph = FakeGraph(strict_refs=True)
    for i in range(4):
        graph.users[f"u{i}"] = {"id": f"u{i}"}
    ops = [_add(f"a{i}", "g1", directory_object_url(BASE, f"u{i}")) for i in range(4)]
    ops.append(_add("ghost", "g1", directory_object_url(BASE, "nobody")))
    report = await _engine(graph).run(ops)
    results = report.by_id()
    assert [results[f"a{i}"].outcome for i in range(4)] == [Outcome.SUCCEEDED] * 4
    ghost = results["ghost"]
    assert ghost.outcome is Outcome.FAILED
    assert ghost.status == 400
    assert "do not exist" in (ghost.error or "")
    assert report.stats.replication_retries == 0  # nothing created in this run: no waiting
    assert len(graph.members["g1"]) == 4


async def test_throttled_bind_is_resent_and_applied_once() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/groups/g1", Fault(429, retry_after="1"))
    ops = [_add(f"a{i}", "g1", directory_object_url(BASE, f"u{i}")) for i in range(3)]
    report = await _engine(graph).run(ops)
    assert report.count(Outcome.SUCCEEDED) == 3
    assert report.stats.items_throttled == 3
    assert graph.binds == [("g1", 3)]


async def test_bind_applied_but_answered_429_resolves_as_already_there() -> None:
    """A 429 inside a batch does not prove the write was not applied: the resend answers
    "already exist", which is success."""
    graph = FakeGraph()
    graph.fault("PATCH", "/groups/g1", Fault(429, retry_after="1", apply=True))
    ops = [_add(f"a{i}", "g1", directory_object_url(BASE, f"u{i}")) for i in range(3)]
    report = await _engine(graph).run(ops)
    assert report.count(Outcome.SUCCEEDED) == 3
    assert len(graph.members["g1"]) == 3
    assert set(graph.member_adds.values()) == {1}


# -- replication delay --------------------------------------------------------------------


async def test_joiners_with_replication_delay_lose_no_membership() -> None:
    graph = FakeGraph(replication_delay=5.0, strict_refs=True)
    ops = [op for n in range(30) for op in _joiner(n)]
    report = await _engine(graph).run(ops)
    assert report.count(Outcome.SUCCEEDED) == 90, [r for r in report.results if not r.succeeded]
    assert report.stats.replication_retries > 0
    assert graph.creates == 30
    assert len(graph.members["g1"]) == len(graph.members["g2"]) == 30
    assert set(graph.member_adds.values()) == {1}
    assert report.stats.member_binds >= 4  # 30 adds per group: at least two binds each
    _assert_parallel(graph)


async def test_replication_bound_exceeded_fails_with_the_api_error() -> None:
    graph = FakeGraph(replication_delay=1000.0, strict_refs=True)
    ops = _joiner(1, ("g1",))
    report = await _engine(graph, replication_seconds=20.0).run(ops)
    results = report.by_id()
    assert results["create-E1"].succeeded
    add = results["add-E1-g1"]
    assert add.outcome is Outcome.FAILED
    assert add.status == 400
    assert "do not exist" in (add.error or "")
    assert report.stats.replication_retries > 0
    assert graph.members.get("g1", set()) == set()
    waited = graph.time.now - 1000.0
    assert 0 < waited <= 20.0 + 1.0


async def test_replication_bound_zero_fails_at_once() -> None:
    graph = FakeGraph(replication_delay=5.0, strict_refs=True)
    report = await _engine(graph, replication_seconds=0.0).run(_joiner(1, ("g1",)))
    assert report.by_id()["add-E1-g1"].outcome is Outcome.FAILED
    assert report.stats.replication_retries == 0


async def test_adding_to_a_group_just_created_waits_for_it() -> None:
    graph = FakeGraph(replication_delay=3.0)
    graph.users["u1"] = {"id": "u1"}
    create = Operation("group", "POST", "/groups", {"displayName": "New"})
    report = await _engine(graph).run([create])
    gid = report.results[0].body["id"]
    # a second run that knows the group only by id: not eligible, it would fail at once
    graph2 = FakeGraph(replication_delay=3.0)
    graph2.users["u1"] = {"id": "u1"}
    ops = [
        Operation("group", "POST", "/groups", {"displayName": "New"}),
        _add("add", gid, directory_object_url(BASE, "u1"), "group"),
    ]
    report = await _engine(graph2).run(ops)
    assert report.by_id()["add"].succeeded
    assert report.stats.replication_retries > 0
    assert graph2.members[gid] == {directory_object_url(BASE, "u1")}


async def test_conflict_read_back_retried_while_the_object_replicates() -> None:
    graph = FakeGraph(replication_delay=4.0)
    graph.users["x"] = {"id": "x", "employeeId": "E1", "userPrincipalName": "E1@contoso.test"}
    graph.created_at["x"] = graph.time.now  # created elsewhere a moment ago
    report = await _engine(graph).run(_joiner(1, ())[:1])
    result = report.results[0]
    assert result.succeeded
    assert result.resolved_conflict
    assert report.stats.readbacks >= 2
    assert graph.creates == 0


async def test_conflict_with_another_object_fails_after_the_bound() -> None:
    graph = FakeGraph()
    graph.users["x"] = {"id": "x", "userPrincipalName": "j1@contoso.test"}
    report = await _engine(graph, replication_seconds=10.0).run(_joiner(1, ("g1",)))
    create = report.by_id()["create-E1"]
    assert create.outcome is Outcome.FAILED
    assert "found no object with employeeId == 'E1'" in (create.error or "")
    dependant = report.by_id()["add-E1-g1"]
    assert dependant.status == 424
    assert dependant.error_code == "failedDependency"
    assert "already exists" in (dependant.error or "")  # the root's error
    assert graph.time.now - 1000.0 <= 10.0 + 1.0


# -- idempotent resends -------------------------------------------------------------------


async def test_delete_answered_404_after_an_unknown_outcome_is_success() -> None:
    graph = FakeGraph()
    graph.members["g1"] = {directory_object_url(BASE, "u1")}
    url = "/groups/g1/members/u1/$ref"
    graph.fault("DELETE", url, Fault(503, apply=True))
    report = await _engine(graph).run([Operation("rm", "DELETE", url)])
    result = report.results[0]
    assert result.succeeded
    assert result.status == 404
    assert result.resolved_conflict
    assert result.attempts == 2
    assert graph.members["g1"] == set()


async def test_delete_answered_404_after_a_429_that_was_applied_is_success() -> None:
    graph = FakeGraph()
    graph.members["g1"] = {directory_object_url(BASE, "u1")}
    url = "/groups/g1/members/u1/$ref"
    graph.fault("DELETE", url, Fault(429, retry_after="1", apply=True))
    report = await _engine(graph).run([Operation("rm", "DELETE", url)])
    assert report.results[0].succeeded


async def test_delete_answered_404_on_its_first_send_fails() -> None:
    graph = FakeGraph()
    report = await _engine(graph).run([Operation("rm", "DELETE", "/groups/g1/members/u9/$ref")])
    assert report.results[0].outcome is Outcome.FAILED
    assert report.results[0].status == 404


async def test_create_applied_but_answered_429_is_read_back_not_duplicated() -> None:
    graph = FakeGraph()
    graph.fault("POST", "/users", Fault(429, retry_after="1", apply=True))
    report = await _engine(graph).run(_joiner(1, ("g1",)))
    assert all(r.succeeded for r in report.results)
    assert report.by_id()["create-E1"].resolved_conflict
    assert graph.creates == 1


# -- bodies that cannot be encoded ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("Ada\ud800", "lone surrogate"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        ({"deep": [1, -math.inf]}, "-inf"),
    ],
)
async def test_a_body_that_cannot_be_encoded_fails_that_operation_only(
    value: Any, why: str
) -> None:
    graph = FakeGraph()
    bad = Operation("bad", "PATCH", "/users/u1", {"displayName": value})
    dependant = Operation("after", "PATCH", "/users/u1", {"city": "x"}, depends_on=("bad",))
    ops = [Operation(f"ok{i}", "PATCH", f"/users/u{i}", {"city": "y"}) for i in range(5)]
    report = await _engine(graph).run([*ops, bad, dependant])
    results = report.by_id()
    assert all(results[f"ok{i}"].succeeded for i in range(5))
    assert results["bad"].outcome is Outcome.FAILED
    assert results["bad"].error_code == "invalidOperation"
    assert results["bad"].attempts == 0
    assert "body['displayName']" in (results["bad"].error or "")
    assert why in (results["bad"].error or "").lower()
    assert results["after"].outcome is Outcome.FAILED
    assert "'bad'" in (results["after"].error or "")
    assert len(graph.batches) == 1
    assert len(graph.batches[0]) == 5


# -- national clouds ----------------------------------------------------------------------


async def test_national_cloud_base_url_builds_and_sends_references_there() -> None:
    us = "https://graph.microsoft.us/v1.0"
    graph = FakeGraph(base=us, strict_refs=True)
    for i in range(3):
        graph.users[f"u{i}"] = {"id": f"u{i}"}
    client = make_client(graph)
    ops = [_add(f"a{i}", "g1", directory_object_url(client.base, f"u{i}")) for i in range(3)]
    ops.append(_add("public", "g1", "https://graph.microsoft.com/v1.0/directoryObjects/u0"))
    engine = BatchEngine(
        client, clock=graph.time.clock, sleep=graph.time.sleep, rng=random.Random(0)
    )
    report = await engine.run(ops)
    results = report.by_id()
    assert all(results[f"a{i}"].succeeded for i in range(3))
    assert results["public"].outcome is Outcome.FAILED  # a reference to another cloud
    assert "Invalid object identifier" in (results["public"].error or "")
    assert {str(r.url.host) for r in graph.requests} == {"graph.microsoft.us"}
    assert graph.members["g1"] == {f"{us}/directoryObjects/u{i}" for i in range(3)}


def test_reference_urls_follow_the_base() -> None:
    assert directory_object_url("https://graph.microsoft.us/v1.0/", "abc") == (
        "https://graph.microsoft.us/v1.0/directoryObjects/abc"
    )
    assert user_url(BASE, "ada@contoso.com") == f"{BASE}/users/ada@contoso.com"
    assert user_url(BASE, "ada_x.com#EXT#@contoso.com") == (
        f"{BASE}/users/ada_x.com%23EXT%23@contoso.com"
    )
    assert group_url("https://microsoftgraph.chinacloudapi.cn/v1.0", "g") == (
        "https://microsoftgraph.chinacloudapi.cn/v1.0/groups/g"
    )
    with pytest.raises(UnsafeRequestError, match="object id is missing"):
        directory_object_url(BASE, " ")
    with pytest.raises(UnsafeRequestError, match="contains '/'"):
        user_url(BASE, "../me")
    with pytest.raises(UnsafeRequestError, match="https"):
        group_url("http://graph.microsoft.com/v1.0", "g")


# -- no token -------------------------------------------------------------------------------


async def test_no_token_gives_up_retryably_and_sends_nothing() -> None:
    """Entra ID refused the token: nothing was sent, it may work later (redelivery)."""
    graph = FakeGraph()

    async def refused(*, force_refresh: bool = False) -> str:
        raise TokenRequestError("AADSTS700016: application not found", (700016,))

    client = ApiClient(graph.base, refused, transport=httpx.MockTransport(graph.handler))
    engine = BatchEngine(client, clock=graph.time.clock, sleep=graph.time.sleep)
    for use_batch in (True, False):
        engine.use_batch = use_batch
        report = await engine.run(
            [Operation(f"p{i}", "PATCH", f"/users/u{i}", {}) for i in range(3)]
        )
        assert report.count(Outcome.GAVE_UP) == 3
        assert all("AADSTS700016" in (r.error or "") for r in report.results)
        assert all(r.error_code == "TokenRequestError" for r in report.results)
    assert graph.requests == []


# -- the setting ----------------------------------------------------------------------------


def _sample_settings(**overrides: str) -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    values = json.loads((root / "local.settings.sample.json").read_text())["Values"]
    return {**values, **overrides}


def test_replication_retry_setting_default_and_bad_values() -> None:
    assert load_settings(_sample_settings()).replication_retry_seconds == 60.0
    settings = load_settings(_sample_settings(DAEMON_REPLICATION_RETRY_SECONDS="15"))
    assert settings.replication_retry_seconds == 15.0
    for bad in ("inf", "nan", "0", "-5", "soon", "601"):
        with pytest.raises(SettingError, match="DAEMON_REPLICATION_RETRY_SECONDS"):
            load_settings(_sample_settings(DAEMON_REPLICATION_RETRY_SECONDS=bad))
    with pytest.raises(ValueError, match="replication_seconds"):
        BatchEngine(make_client(FakeGraph()), replication_seconds=math.inf)


# -- references to objects created in the run ----------------------------------------------


async def test_adds_reference_the_created_object_by_id_not_by_upn() -> None:
    graph = FakeGraph()
    ops: list[Operation] = []
    for n in range(3):
        create, *adds = _joiner(n)
        ops.append(create)
        ops.extend(
            Operation(
                a.id,
                a.method,
                a.url,
                a.body,
                headers=a.headers,
                depends_on=a.depends_on,
                reference_from=create.id,
            )
            for a in adds
        )
    report = await _engine(graph).run(ops)
    assert report.count(Outcome.SUCCEEDED) == len(ops)
    created = {
        r.operation_id: r.body["id"] for r in report.results if r.operation_id.startswith("create")
    }
    for group in ("g1", "g2"):
        assert graph.members[group] == {directory_object_url(BASE, i) for i in created.values()}
    refs = [
        ref
        for batch in graph.batches
        for item in batch
        if item["url"].startswith("/groups/")
        for ref in item["body"].get("members@odata.bind", [item["body"].get("@odata.id")])
    ]
    assert len(refs) == 6
    assert all(ref.startswith(f"{BASE}/directoryObjects/") for ref in refs)  # never by UPN
    _assert_parallel(graph)


def test_reference_from_must_name_a_dependency_of_a_member_add() -> None:
    from shared.webapi.operations import validate_operations
    from shared.webapi.urls import BaseUrl

    ok = _add("a", "g1", user_url(BASE, "x@contoso.test"), "c")
    wrong = [
        Operation(ok.id, ok.method, ok.url, ok.body, depends_on=(), reference_from="c"),
        Operation(
            ok.id, "PATCH", "/users/x", {"jobTitle": "t"}, depends_on=("c",), reference_from="c"
        ),
    ]
    create = Operation("c", "POST", "/users", {"userPrincipalName": "x@contoso.test"})
    for op in wrong:
        _, errors = validate_operations([create, op], BaseUrl(BASE))
        assert "reference_from" in errors[1]
