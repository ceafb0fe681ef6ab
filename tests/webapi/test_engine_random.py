"""Exactly one final result per operation, under random operations and random faults.

A seeded property test: each seed builds a random graph of operations (chains, some longer
than a batch; fan-ins; creates with and without CreateIdentity; member adds to a few shared
groups, many naming a user created in the same run; permanent failures; malformed
operations) and a strict fake Graph (refuses any batch that is not fully parallel, runs
items in random order, replication delay on for some seeds) that injects random item faults
(429 with Retry-After, 5xx before and after applying) and whole-batch faults (malformed
answers, timeouts, 5xx envelopes). Properties: every batch sent is fully parallel and at
most 20 items; exactly one result per operation; nothing applied twice; an operation is
sent only after everything it depends on succeeded.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from shared.webapi import (
    BatchEngine,
    CreateIdentity,
    EngineReport,
    Operation,
    Outcome,
    PacingConfig,
    RetryPolicy,
)
from tests.webapi.fakes import BASE, FakeGraph, Fault, make_client

BATCH_FAULTS = [
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
]


def _operations(rng: random.Random) -> list[Operation]:
    ops: list[Operation] = []
    creates: list[Operation] = []
    n = rng.randint(1, 70)
    for i in range(n):
        deps: tuple[str, ...] = ()
        if ops and rng.random() < 0.25:
            deps = tuple(dict.fromkeys(rng.choice(ops).id for _ in range(rng.randint(1, 3))))
        kind = rng.random()
        if kind < 0.3:
            op = Operation(f"p{i}", "PATCH", f"/users/u{i}", body={"n": i}, depends_on=deps)
        elif kind < 0.4:
            op = Operation(f"g{i}", "GET", f"/users/u{i}", depends_on=deps)
        elif kind < 0.55:
            emp = f"E{i}"
            op = Operation(
                f"c{i}",
                "POST",
                "/users",
                body={"employeeId": emp, "userPrincipalName": f"e{i}@contoso.test"},
                idempotency=CreateIdentity(
                    f"/users?$filter=employeeId eq '{emp}'", "employeeId", emp
                ),
                depends_on=deps,
            )
            creates.append(op)
        elif kind < 0.6:
            op = Operation(f"n{i}", "POST", "/users", body={"employeeId": f"N{i}"}, depends_on=deps)
        elif kind < 0.72:
            if creates and rng.random() < 0.7:  # a joiner's group add
                create = rng.choice(creates)
                ref = f"{BASE}/users/{create.body['userPrincipalName']}"
                deps = tuple(dict.fromkeys((*deps, create.id)))
            else:
                ref = f"{BASE}/directoryObjects/{i % 5}"
            op = Operation(
                f"m{i}",
                "POST",
                f"/groups/g{i % 3}/members/$ref",
                body={"@odata.id": ref},
                depends_on=deps,
            )
        elif kind < 0.76:
            op = Operation(f"d{i}", "DELETE", f"/groups/g{i % 3}/members/r{i % 5}/$ref")
        elif kind < 0.82:
            op = Operation(f"f{i}", "PATCH", f"/fail/{i}", body={}, depends_on=deps)
        elif kind < 0.86:
            op = rng.choice(
                [
                    Operation(f"x{i}", "GET", f"https://evil.example/v1.0/users/{i}"),
                    Operation(f"x{i}", "TRACE", f"/users/{i}"),
                    Operation(f"x{i}", "GET", f"/users/{i}", body={"no": 1}),
                    Operation(f"x{i}", "GET", f"/users/{i}", depends_on=("ghost",)),
                    Operation(f"x{i}", "PATCH", f"/users/{i}", body={"v": float("nan")}),
                    Operation(f"x{i}", "PATCH", f"/users/{i}", body={"v": "\ud800"}),
                ]
            )
        else:
            # a chain, sometimes longer than a batch
            length = rng.choice([2, 3, 5, 22])
            prev: tuple[str, ...] = deps
            for k in range(length):
                op = Operation(f"k{i}-{k}", "PATCH", f"/users/k{i}-{k}", body={}, depends_on=prev)
                ops.append(op)
                prev = (op.id,)
            continue
        ops.append(op)
    if ops and rng.random() < 0.1:
        ops.append(ops[0])  # a duplicate id
    return ops


def _graph(rng: random.Random) -> FakeGraph:
    graph = FakeGraph(rng=random.Random(rng.random()), replication_delay=rng.choice([0.0, 3.0]))
    for i in range(80):
        if rng.random() < 0.7:
            graph.users[f"u{i}"] = {"id": f"u{i}"}
    for g in range(3):  # members that the DELETEs remove (no operation adds them)
        graph.members[f"g{g}"] = {f"{BASE}/directoryObjects/r{k}" for k in range(5)}
    p_item = rng.choice([0.0, 0.1, 0.3])
    p_batch = rng.choice([0.0, 0.1, 0.3])

    def item_fault(method: str, url: str) -> Fault | None:
        if rng.random() >= p_item:
            return None
        roll = rng.random()
        if roll < 0.5:
            return Fault(429, retry_after=rng.choice(["0.5", "1.5", "2", "0"]))
        if roll < 0.7:
            return Fault(503)
        if roll < 0.9:
            return Fault(503, apply=True)
        return Fault(500, apply=True)

    def batch_fault() -> str | None:
        return rng.choice(BATCH_FAULTS) if rng.random() < p_batch else None

    graph.random_item_fault = item_fault
    graph.random_batch_fault = batch_fault
    return graph


def _check(ops: list[Operation], graph: FakeGraph, report: EngineReport) -> None:
    results = report.results
    # every batch fully parallel and at most 20 items; none refused
    assert graph.refused_batches == 0
    for batch in graph.batches:
        assert 1 <= len(batch) <= 20
        assert all("dependsOn" not in item for item in batch)
    # exactly one result per operation, in order
    assert len(results) == len(ops)
    assert [r.operation_id for r in results] == [o.id for o in ops]
    by_id: dict[str, Any] = {}
    for op, r in zip(ops, results, strict=True):
        by_id.setdefault(op.id, r)
        assert r.outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.GAVE_UP)
        assert "internal error" not in (r.error or "")
        if r.outcome is Outcome.SUCCEEDED:
            assert r.resolved_conflict or (r.status is not None and 200 <= r.status < 300)
            assert not op.url.startswith("/fail")
        else:
            assert r.error
    # sent only after everything it depends on succeeded
    for op in ops:
        r = by_id[op.id]
        if r.attempts > 0 or r.outcome is Outcome.SUCCEEDED:
            for dep in op.depends_on:
                assert by_id[dep].succeeded, (op.id, dep)
        elif r.status == 424:
            assert r.error_code == "failedDependency"
    # nothing applied twice: creates at most once per correlation value, member adds once
    emps = [u["employeeId"] for u in graph.users.values() if "employeeId" in u]
    assert len(emps) == len(set(emps)), emps
    assert all(count == 1 for count in graph.member_adds.values()), graph.member_adds
    for op in ops:
        if op.idempotency is not None and by_id[op.id].outcome is Outcome.SUCCEEDED:
            assert op.idempotency.value in emps
    # a joiner's group add reported done is in its group (deletes touch other members)
    for op in ops:
        ref = op.body.get("@odata.id", "") if isinstance(op.body, dict) else ""
        if op.id.startswith("m") and "/users/" in ref and by_id[op.id].succeeded:
            upn = ref.rsplit("/", 1)[-1]
            (uid,) = [k for k, u in graph.users.items() if u.get("userPrincipalName") == upn]
            assert f"{BASE}/directoryObjects/{uid}" in graph.members[op.url.split("/")[2]]
    # the token only went to Graph
    assert all(r.url.host == "graph.microsoft.com" for r in graph.requests)
    # no throttled URL was sent again before its Retry-After
    for url, at, wait in graph.throttled_seen:
        if url == "/users" or url.startswith("/groups"):
            continue  # shared URLs: cannot tell the operations apart
        later = [t for t in graph.arrivals.get(url, []) if t > at]
        if later:
            assert later[0] >= at + wait, (url, at, wait, later)


@pytest.mark.parametrize("block", range(4))
async def test_exactly_one_result_per_operation_under_random_faults(block: int) -> None:
    for seed in range(block * 40, block * 40 + 40):
        rng = random.Random(seed)
        ops = _operations(rng)
        graph = _graph(rng)
        engine = BatchEngine(
            make_client(graph),
            use_batch=rng.random() < 0.8,
            concurrency=rng.randint(1, 5),
            retry=RetryPolicy(
                max_attempts=rng.randint(2, 6), max_total_seconds=rng.choice([30.0, 600.0])
            ),
            pacing=PacingConfig(writes_per_second=rng.choice([5.0, 20.0, 200.0])),
            clock=graph.time.clock,
            sleep=graph.time.sleep,
            rng=random.Random(seed),
        )
        report = await engine.run(ops)
        try:
            _check(ops, graph, report)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
