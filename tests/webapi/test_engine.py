from __future__ import annotations

import random
from typing import Any

import pytest

from shared.webapi import (
    BatchEngine,
    CreateIdentity,
    Operation,
    Outcome,
    PacingConfig,
    Progress,
    RetryPolicy,
    TenantPacer,
)
from tests.webapi.fakes import FakeGraph, FakeTokens, Fault, make_client


def _engine(
    graph: FakeGraph,
    *,
    use_batch: bool = True,
    retry: RetryPolicy | None = None,
    concurrency: int = 4,
    pacer: TenantPacer | None = None,
    tokens: FakeTokens | None = None,
) -> BatchEngine:
    return BatchEngine(
        make_client(graph, tokens),
        use_batch=use_batch,
        concurrency=concurrency,
        retry=retry or RetryPolicy(max_attempts=5, max_total_seconds=600.0),
        pacer=pacer,
        pacing=PacingConfig(writes_per_second=20.0, resource_units_per_second=350.0),
        clock=graph.time.clock,
        sleep=graph.time.sleep,
        rng=random.Random(0),
    )


def _patch(i: int | str, **kw: Any) -> Operation:
    return Operation(f"op{i}", "PATCH", f"/users/u{i}", body={"city": f"c{i}"}, **kw)


def _create(emp: str, *, identity: bool = True, op_id: str | None = None) -> Operation:
    return Operation(
        op_id or f"create-{emp}",
        "POST",
        "/users",
        body={"employeeId": emp, "userPrincipalName": f"{emp}@contoso.test"},
        idempotency=CreateIdentity(f"/users?$filter=employeeId eq '{emp}'", "employeeId", emp)
        if identity
        else None,
    )


def _items(graph: FakeGraph, batch: int) -> list[dict[str, Any]]:
    return graph.batches[batch]


async def test_45_operations_go_in_batches_of_20_20_5() -> None:
    graph = FakeGraph()
    report = await _engine(graph).run([_patch(i) for i in range(45)])
    assert sorted(len(b) for b in graph.batches) == [5, 20, 20]
    assert [r.operation_id for r in report.results] == [f"op{i}" for i in range(45)]
    assert all(r.outcome is Outcome.SUCCEEDED and r.status == 204 for r in report.results)
    assert report.stats.batches_sent == 3
    assert report.stats.items_sent == 45
    assert graph.users["u44"]["city"] == "c44"


async def test_batch_items_are_well_formed() -> None:
    graph = FakeGraph()
    ops = [
        Operation("get", "GET", "/users/u1"),
        Operation("photo", "PATCH", "/users/u2", body=b"\x00\x01", headers={"Content-Type": "x/y"}),
        _patch(3),
    ]
    await _engine(graph).run(ops)
    items = _items(graph, 0)
    assert [i["url"] for i in items] == ["/users/u1", "/users/u2", "/users/u3"]
    assert len({i["id"] for i in items}) == 3
    assert "headers" not in items[0]
    assert items[1]["body"] == "AAE="  # base64
    assert items[2]["headers"] == {"Content-Type": "application/json"}
    assert items[2]["body"] == {"city": "c3"}


async def test_dependencies_honoured_by_the_engine_every_batch_fully_parallel() -> None:
    graph = FakeGraph()
    ops = [
        _patch(1),
        _patch("c", depends_on=("opb",)),
        _patch(2),
        _patch("b", depends_on=("opa",)),
        _patch("a"),
    ]
    report = await _engine(graph, concurrency=1).run(ops)
    assert all(r.succeeded for r in report.results)
    assert [sorted(i["url"] for i in b) for b in graph.batches] == [
        ["/users/u1", "/users/u2", "/users/ua"],
        ["/users/ub"],
        ["/users/uc"],
    ]
    assert all("dependsOn" not in i and "depends_on" not in i for b in graph.batches for i in b)
    assert graph.refused_batches == 0


async def test_independent_steps_of_many_chains_share_full_batches() -> None:
    """40 chains of 3: the roots fill two batches of 20, then the second steps, then the
    third: 6 batches of 20 (the old packing needed 120 ÷ 18 → 7 batches of 18)."""
    graph = FakeGraph()
    ops: list[Operation] = []
    for c in range(40):
        ops += [
            _patch(f"{c}-0"),
            _patch(f"{c}-1", depends_on=(f"op{c}-0",)),
            _patch(f"{c}-2", depends_on=(f"op{c}-1",)),
        ]
    report = await _engine(graph, concurrency=2).run(ops)
    assert report.count(Outcome.SUCCEEDED) == 120
    assert sorted(len(b) for b in graph.batches) == [20] * 6
    for c in range(40):
        first, second, third = (graph.arrivals[f"/users/u{c}-{k}"][0] for k in range(3))
        assert first < second < third


async def test_throttled_items_retried_in_new_batch_after_their_retry_after() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/u3", Fault(429, retry_after="1.5"))
    graph.fault("PATCH", "/users/u7", Fault(429, retry_after="3"))
    graph.fault("PATCH", "/users/u9", Fault(429, retry_after="0.5"))
    report = await _engine(graph).run([_patch(i) for i in range(20)])
    assert all(r.succeeded for r in report.results)
    assert len(graph.batches) == 2
    assert sorted(i["url"] for i in graph.batches[1]) == ["/users/u3", "/users/u7", "/users/u9"]
    first, second = (graph.arrivals["/users/u7"][i] for i in (0, 1))
    assert second - first >= 3.0  # the largest Retry-After among them
    for url, wait in (("/users/u3", 1.5), ("/users/u9", 0.5)):
        assert graph.arrivals[url][1] - graph.arrivals[url][0] >= wait
    assert report.stats.items_throttled == 3
    assert report.stats.retries == 3
    assert report.by_id()["op7"].attempts == 2


async def test_fractional_retry_after_is_waited_in_fake_time() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/u1", Fault(429, retry_after="1.5"))
    await _engine(graph).run([_patch(1)])
    a, b = graph.arrivals["/users/u1"]
    assert b - a >= 1.5


async def test_dependants_wait_until_a_throttled_root_succeeded() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/ua", Fault(429, retry_after="2"))
    ops = [_patch("a"), _patch("b", depends_on=("opa",)), _patch("c", depends_on=("opb",))]
    ops.append(_patch("x"))
    report = await _engine(graph).run(ops)
    assert all(r.succeeded for r in report.results), report.results
    assert [sorted(i["url"] for i in b) for b in graph.batches] == [
        ["/users/ua", "/users/ux"],
        ["/users/ua"],
        ["/users/ub"],
        ["/users/uc"],
    ]
    assert graph.arrivals["/users/ua"][1] - graph.arrivals["/users/ua"][0] >= 2.0
    assert graph.arrivals["/users/ub"][0] >= graph.arrivals["/users/ua"][1]
    assert report.by_id()["opc"].attempts == 1  # never sent before its root succeeded
    assert report.by_id()["opa"].attempts == 2


async def test_424_dependants_fail_when_root_fails_permanently() -> None:
    graph = FakeGraph()
    ops = [
        Operation("root", "PATCH", "/fail/root", body={"a": 1}),
        _patch("b", depends_on=("root",)),
        _patch("c", depends_on=("opb",)),
        _patch("d"),
    ]
    report = await _engine(graph).run(ops)
    results = report.by_id()
    assert results["root"].outcome is Outcome.FAILED
    assert results["root"].status == 400
    assert "always fails" in (results["root"].error or "")
    for dep in ("opb", "opc"):
        assert results[dep].outcome is Outcome.FAILED
        assert results[dep].status == 424
        assert "did not succeed" in (results[dep].error or "")
    assert results["opd"].succeeded
    assert len(graph.batches) == 1  # nothing resent


async def test_transient_5xx_retried_but_post_without_identity_not_resent() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/u1", Fault(503))
    graph.fault("POST", "/users", Fault(500, apply=True))
    report = await _engine(graph).run([_patch(1), _create("E9", identity=False)])
    results = report.by_id()
    assert results["op1"].succeeded
    assert results["op1"].attempts == 2
    post = results["create-E9"]
    assert post.outcome is Outcome.FAILED
    assert post.outcome_unknown
    assert "not resent" in (post.error or "")
    assert graph.creates == 1  # it was in fact created once, and never again


async def test_gave_up_after_bounded_attempts() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/u1", *[Fault(503)] * 10)
    report = await _engine(graph, retry=RetryPolicy(max_attempts=3)).run([_patch(1), _patch(2)])
    r = report.by_id()["op1"]
    assert r.outcome is Outcome.GAVE_UP
    assert r.attempts == 3
    assert r.status == 503
    assert "gave up after 3 attempt(s)" in (r.error or "")
    assert report.by_id()["op2"].succeeded


async def test_gave_up_when_retry_after_exceeds_the_time_bound() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/u1", Fault(429, retry_after="500"))
    retry = RetryPolicy(max_attempts=5, max_total_seconds=60.0)
    report = await _engine(graph, retry=retry).run([_patch(1)])
    assert report.results[0].outcome is Outcome.GAVE_UP
    assert report.results[0].status == 429


@pytest.mark.parametrize(
    "fault",
    [
        "not_json",
        "wrong_ctype",
        "truncated",
        "missing",
        "unknown_id",
        "no_responses",
        "503",
        "503_applied",
        "timeout",
        "connect",
        "429",
        "400",
    ],
)
async def test_whole_batch_failures_are_retried_or_reported_never_dropped(fault: str) -> None:
    graph = FakeGraph()
    graph.batch_faults.append(fault)
    ops = [_patch(i) for i in range(8)]
    ops += [_create("E1"), _create("E2", identity=False)]
    report = await _engine(graph).run(ops)
    assert len(report.results) == len(ops)
    results = report.by_id()
    assert all(results[f"op{i}"].succeeded for i in range(8))
    safe = results["create-E1"]
    assert safe.succeeded, safe  # resent; a conflict, if any, resolved by reading back
    unsafe = results["create-E2"]
    if unsafe.outcome is not Outcome.SUCCEEDED:
        assert unsafe.outcome_unknown
        assert "not resent" in (unsafe.error or "")
    # never created twice
    assert sorted(u["employeeId"] for u in graph.users.values() if "employeeId" in u) in (
        ["E1", "E2"],
        ["E1"],
    )
    if fault in ("connect", "429", "400"):  # certainly not applied: safe to resend a POST
        assert unsafe.succeeded
        assert not safe.resolved_conflict
    if fault in ("timeout", "truncated", "not_json", "wrong_ctype", "503_applied"):
        assert safe.resolved_conflict  # applied, answer lost, resolved by reading back
        assert safe.body["employeeId"] == "E1"
        assert unsafe.outcome is Outcome.FAILED


async def test_idempotent_create_conflict_resolved_by_reading_back() -> None:
    graph = FakeGraph()
    graph.batch_faults.append("timeout")  # created, but the answer never arrives
    report = await _engine(graph).run([_create("E1")])
    result = report.results[0]
    assert result.outcome is Outcome.SUCCEEDED
    assert result.resolved_conflict
    assert result.body == graph.users["id-1"]
    assert graph.creates == 1
    assert report.stats.conflicts_resolved == 1
    assert report.stats.readbacks == 1


async def test_idempotent_create_conflict_with_someone_elses_object_fails() -> None:
    graph = FakeGraph()
    graph.users["other"] = {"id": "other", "userPrincipalName": "E1@contoso.test"}
    graph.fault("POST", "/users", Fault(503))  # not applied, but the engine cannot know
    report = await _engine(graph).run([_create("E1")])
    result = report.results[0]
    assert result.outcome is Outcome.FAILED
    assert not result.resolved_conflict
    assert "create conflicts with an existing object" in (result.error or "")
    assert "employeeId == 'E1'" in (result.error or "")
    assert result.error_code == "Request_BadRequest"


async def test_conflict_on_a_first_attempt_is_read_back_too() -> None:
    """Another run created the same joiner at the same moment: the object with our
    employeeId exists, so the create counts as done (and its dependants run)."""
    graph = FakeGraph()
    graph.users["x"] = {"id": "x", "employeeId": "E1", "userPrincipalName": "E1@contoso.test"}
    add = Operation(
        "add",
        "POST",
        "/groups/g1/members/$ref",
        {"@odata.id": "https://graph.microsoft.com/v1.0/users/E1@contoso.test"},
        depends_on=("create-E1",),
    )
    report = await _engine(graph).run([_create("E1"), add])
    result = report.by_id()["create-E1"]
    assert result.outcome is Outcome.SUCCEEDED
    assert result.resolved_conflict
    assert result.body["id"] == "x"
    assert result.attempts == 1
    assert report.stats.readbacks == 1
    assert report.by_id()["add"].succeeded
    assert graph.members["g1"] == {"https://graph.microsoft.com/v1.0/directoryObjects/x"}


async def test_conflict_without_identity_is_a_plain_failure() -> None:
    graph = FakeGraph()
    graph.users["x"] = {"id": "x", "employeeId": "E1", "userPrincipalName": "E1@contoso.test"}
    report = await _engine(graph).run([_create("E1", identity=False)])
    assert report.results[0].outcome is Outcome.FAILED
    assert "already exists" in (report.results[0].error or "")
    assert report.stats.readbacks == 0


async def test_adding_an_existing_member_counts_as_done() -> None:
    graph = FakeGraph()
    graph.members["g1"] = {"https://graph.microsoft.com/v1.0/directoryObjects/u1"}
    op = Operation(
        "add",
        "POST",
        "/groups/g1/members/$ref",
        body={"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/u1"},
    )
    report = await _engine(graph).run([op])
    assert report.results[0].succeeded
    assert report.results[0].resolved_conflict


async def test_malformed_operations_fail_alone_and_never_reach_the_network() -> None:
    graph = FakeGraph()
    ops = [
        _patch(1),
        Operation("evil", "GET", "https://evil.example/v1.0/users"),
        Operation("bad-method", "FETCH", "/users"),
        Operation("no-url", "GET", ""),
        Operation("get-body", "GET", "/users/u1", body={"a": 1}),
        Operation("orphan", "GET", "/users/u1", depends_on=("missing",)),
        _patch(2),
        _patch(1),  # duplicate id op1
    ]
    report = await _engine(graph).run(ops)
    assert [r.operation_id for r in report.results] == [
        "op1",
        "evil",
        "bad-method",
        "no-url",
        "get-body",
        "orphan",
        "op2",
        "op1",
    ]
    outcomes = [r.outcome for r in report.results]
    assert outcomes == [Outcome.SUCCEEDED] + [Outcome.FAILED] * 5 + [Outcome.SUCCEEDED] + [
        Outcome.FAILED
    ]
    for r in report.results[1:6]:
        assert r.attempts == 0
        assert r.error_code == "invalidOperation"
    assert "refused to send the token to https://evil.example" in (report.results[1].error or "")
    assert "duplicate id" in (report.results[7].error or "")
    sent_urls = [i["url"] for b in graph.batches for i in b]
    assert sorted(sent_urls) == ["/users/u1", "/users/u2"]
    assert all("evil" not in str(r.url) for r in graph.requests)


async def test_direct_mode_same_guarantees() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/ua", Fault(429, retry_after="1.5"))
    graph.fault("PATCH", "/users/u5", Fault(503))
    ops = [_patch("a"), _patch("b", depends_on=("opa",)), _patch(5)]
    ops += [Operation("root", "PATCH", "/fail/x", body={}), _patch("z", depends_on=("root",))]
    report = await _engine(graph, use_batch=False).run(ops)
    results = report.by_id()
    assert graph.batches == []
    assert all(results[k].succeeded for k in ("opa", "opb", "op5"))
    assert graph.arrivals["/users/ub"][0] >= graph.arrivals["/users/ua"][1]  # after its dep
    assert graph.arrivals["/users/ua"][1] - graph.arrivals["/users/ua"][0] >= 1.5
    assert results["root"].outcome is Outcome.FAILED
    assert results["opz"].status == 424
    assert "/users/uz" not in graph.arrivals  # never sent
    assert report.stats.requests_sent == 6


async def test_a_chain_longer_than_a_batch_runs_step_by_step_next_to_other_work() -> None:
    graph = FakeGraph()
    chain = [_patch(0)] + [_patch(i, depends_on=(f"op{i - 1}",)) for i in range(1, 25)]
    others = [_patch(f"x{i}") for i in range(5)]
    report = await _engine(graph).run(chain + others)
    assert all(r.succeeded for r in report.results)
    times = [graph.arrivals[f"/users/u{i}"][0] for i in range(25)]
    assert times == sorted(times)
    assert report.stats.requests_sent == 0
    assert report.stats.batches_sent == 25


async def test_envelope_400_sends_each_request_alone() -> None:
    graph = FakeGraph()
    graph.batch_faults.append("400")
    ops = [_patch(1), _patch(2), _patch(3, depends_on=("op2",))]
    report = await _engine(graph).run(ops)
    assert all(r.succeeded for r in report.results)
    assert [len(b) for b in graph.batches] == [2, 1, 1, 1]  # each request alone after a 400


async def test_envelope_401_after_refresh_fails_the_batch() -> None:
    graph = FakeGraph()
    graph.unauthorized_tokens.update({"token-0", "token-1"})
    report = await _engine(graph).run([_patch(1), _patch(2)])
    assert all(r.outcome is Outcome.FAILED and r.status == 401 for r in report.results)


async def test_401_once_refreshes_and_the_batch_succeeds() -> None:
    graph = FakeGraph()
    graph.unauthorized_tokens.add("token-0")
    tokens = FakeTokens()
    report = await _engine(graph, tokens=tokens).run([_patch(1)])
    assert report.results[0].succeeded
    assert tokens.calls.count(True) == 1


async def test_progress_callback_counts() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/u1", Fault(429, retry_after="1"))
    seen: list[Progress] = []
    ops = [_patch(i) for i in range(30)] + [Operation("bad", "GET", "")]
    await _engine(graph, concurrency=1).run(ops, progress=seen.append)
    assert seen[0].total == 31
    assert seen[-1].done == 31
    assert seen[-1].succeeded == 30
    assert seen[-1].failed == 1
    assert seen[-1].throttled == 1
    assert seen[-1].in_flight == 0
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert any(p.in_flight > 0 for p in seen)


async def test_empty_run() -> None:
    report = await _engine(FakeGraph()).run([])
    assert report.results == ()


async def test_pacing_holds_the_budget_without_429s() -> None:
    """A Graph that throttles writes at 20/s (token bucket, 1 s burst): the engine should
    use ≥ 90 % of it with < 2 % of items answered 429 (fake time)."""
    graph = FakeGraph()
    bucket = {"tokens": 20.0, "stamp": graph.time.now}

    def budget(method: str, url: str) -> Fault | None:
        now = graph.time.now
        bucket["tokens"] = min(20.0, bucket["tokens"] + (now - bucket["stamp"]) * 20.0)
        bucket["stamp"] = now
        if bucket["tokens"] < 1.0:
            return Fault(429, retry_after="1")
        bucket["tokens"] -= 1.0
        return None

    graph.random_item_fault = budget
    n = 1000
    start = graph.time.now
    report = await _engine(graph).run([_patch(i) for i in range(n)])
    elapsed = graph.time.now - start
    assert all(r.succeeded for r in report.results)
    assert n / elapsed >= 0.9 * 20.0
    assert report.stats.items_throttled / report.stats.items_sent < 0.02


async def test_two_engines_sharing_one_budget_adapt() -> None:
    """Two instances, each configured for the whole 20 writes/s: AIMD finds the shares."""
    graph = FakeGraph()
    bucket = {"tokens": 20.0, "stamp": graph.time.now}

    def budget(method: str, url: str) -> Fault | None:
        now = graph.time.now
        bucket["tokens"] = min(20.0, bucket["tokens"] + (now - bucket["stamp"]) * 20.0)
        bucket["stamp"] = now
        if bucket["tokens"] < 1.0:
            return Fault(429, retry_after="1")
        bucket["tokens"] -= 1.0
        return None

    graph.random_item_fault = budget
    import asyncio

    ops_a = [_patch(f"a{i}") for i in range(300)]
    ops_b = [_patch(f"b{i}") for i in range(300)]
    a, b = await asyncio.gather(_engine(graph).run(ops_a), _engine(graph).run(ops_b))
    assert all(r.succeeded for r in a.results + b.results)
    throttled = a.stats.items_throttled + b.stats.items_throttled
    sent = a.stats.items_sent + b.stats.items_sent
    assert throttled / sent < 0.25
    assert a.stats.final_rate_fraction < 0.95 or b.stats.final_rate_fraction < 0.95


async def test_dependants_of_a_root_that_gave_up_give_up_too() -> None:
    graph = FakeGraph()
    graph.fault("PATCH", "/users/ua", *[Fault(503)] * 10)
    ops = [_patch("a"), _patch("b", depends_on=("opa",)), _patch("c", depends_on=("opb",))]
    report = await _engine(graph, retry=RetryPolicy(max_attempts=2)).run(ops)
    results = report.by_id()
    assert results["opa"].outcome is Outcome.GAVE_UP
    for dep in ("opb", "opc"):
        assert results[dep].outcome is Outcome.GAVE_UP
        assert results[dep].status == 424
        assert results[dep].error_code == "failedDependency"
        assert results[dep].attempts == 0
    assert "/users/ub" not in graph.arrivals
