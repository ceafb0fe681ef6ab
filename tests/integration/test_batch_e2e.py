"""The batch engine against the sandbox's Graph-like API over HTTPS, with real tokens.

The sandbox is strict (it refuses any batch that is not fully parallel or fully sequential,
checks that references name its own host and version) and has its replication delay on.
Counts and states only: the sandbox records every request, item, 429 and write it saw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from sandbox.graph import GraphConfig
from shared.errors import DeltaTokenExpiredError, UnsafeRequestError
from shared.instance import Instance
from shared.settings import load_settings
from shared.webapi import (
    BatchEngine,
    CreateIdentity,
    Operation,
    Outcome,
    PacingConfig,
    Progress,
    RetryPolicy,
    user_url,
)
from tests.sandbox_env import Env, running_sandbox

DOMAIN = "contoso.example"


@pytest.fixture
def graph_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    config = getattr(request, "param", None)
    with running_sandbox(config) as started:
        yield Env(*started, monkeypatch)


def _instance(env: Env) -> Instance:
    return Instance(load_settings(env.settings("keyvault-certificate")))


def _create(n: int) -> Operation:
    upn = f"new{n:05d}@{DOMAIN}"
    return Operation(
        id=f"create-{n}",
        method="POST",
        url="/users",
        body={
            "accountEnabled": True,
            "displayName": f"New User {n}",
            "mailNickname": f"new{n:05d}",
            "userPrincipalName": upn,
            "employeeId": f"N{n:05d}",
            "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": "Xy!9" * 4},
        },
        idempotency=CreateIdentity(
            path=f"/users?$filter=employeeId eq 'N{n:05d}'&$select=id,employeeId",
            attribute="employeeId",
            value=f"N{n:05d}",
        ),
    )


def _add_member(n: int, group_id: str, base: str, *, op_id: str | None = None) -> Operation:
    return Operation(
        id=op_id or f"member-{n}",
        method="POST",
        url=f"/groups/{group_id}/members/$ref",
        body={"@odata.id": user_url(base, f"new{n:05d}@{DOMAIN}")},
        depends_on=(f"create-{n}",),
        reference_from=f"create-{n}",  # sent as directoryObjects/{the created id}
    )


TIGHT = GraphConfig(
    app_tenant_write_limit=300,
    app_tenant_write_window=1.0,
    tenant_write_limit=100_000,
    ru_limits=(2000, 2000, 2000),
    ru_window=1.0,
)


@pytest.mark.parametrize("graph_env", [TIGHT], indirect=True)
async def test_2000_mixed_operations_under_tight_budget_and_5xx(graph_env: Env) -> None:
    env = graph_env
    tenant = env.seed.home_tenant_id
    users = env.graph.directory.seed_users(tenant, 1200)
    group = env.graph.directory.add_group(tenant, "Joiners")
    env.graph.faults.set(error_rate=0.10, error_retry_after=0.2, reset_after_apply_rate=0.01)

    base = _instance(env).settings.api_base_url
    ops: list[Operation] = []
    for n in range(400):
        ops += [_create(n), _add_member(n, group["id"], base)]
    for user in users[:800]:
        ops.append(
            Operation(
                f"update-{user['id']}", "PATCH", f"/users/{user['id']}", {"department": "Research"}
            )
        )
    for user in users[800:1200]:
        ops.append(
            Operation(
                f"disable-{user['id']}", "PATCH", f"/users/{user['id']}", {"accountEnabled": False}
            )
        )
    assert len(ops) == 2000

    instance = _instance(env)
    seen: list[Progress] = []
    async with instance.api_client() as client:
        engine = BatchEngine(
            client,
            concurrency=6,
            # the pacer believes in twice the real budget: the API must throttle it
            pacing=PacingConfig(writes_per_second=600, resource_units_per_second=4000),
            retry=RetryPolicy(max_attempts=12, max_total_seconds=300, base=0.05, cap=0.5),
        )
        report = await engine.run(ops, progress=seen.append)

    # exactly one final result per operation, all applied
    assert [r.operation_id for r in report.results] == [o.id for o in ops]
    outcomes = Counter(r.outcome for r in report.results)
    assert outcomes == {Outcome.SUCCEEDED: 2000}, [
        (r.operation_id, r.status, r.error)
        for r in report.results
        if r.outcome is not Outcome.SUCCEEDED
    ][:5]
    assert seen[-1].done == 2000

    # the faults and the throttling really happened
    stats = env.graph.stats
    assert stats.throttled > 0
    assert stats.faults
    assert report.stats.retries > 0

    # no user created twice, no throttled item resent before its Retry-After
    assert stats.duplicate_creates() == []
    assert stats.early_retries == []

    # the directory is exactly as expected
    directory = env.graph.directory.tenant(tenant)
    members = directory.members[group["id"]]
    for n in range(400):
        created = directory.find_user(f"new{n:05d}@{DOMAIN}")
        assert created is not None
        assert created["employeeId"] == f"N{n:05d}"
        assert created["id"] in members
    assert len(members) == 400
    assert (
        sum(1 for u in directory.users.values() if u.get("employeeId", "").startswith("N")) == 400
    )
    for user in users[:800]:
        assert directory.users[user["id"]]["department"] == "Research"
        assert directory.users[user["id"]]["accountEnabled"] is True
    for user in users[800:1200]:
        assert directory.users[user["id"]]["accountEnabled"] is False
    # one token for the whole run (plus at most one after a revocation: none here)
    assert instance.token_cache.stats.token_requests == 1


async def test_45_operations_are_sent_as_20_20_5_with_depends_on_kept(graph_env: Env) -> None:
    env = graph_env
    tenant = env.seed.home_tenant_id
    users = env.graph.directory.seed_users(tenant, 45)
    ops = [
        Operation(f"u{i}", "PATCH", f"/users/{u['id']}", {"jobTitle": f"T{i}"})
        for i, u in enumerate(users)
    ]
    instance = _instance(env)
    async with instance.api_client() as client:
        report = await BatchEngine(client, concurrency=1).run(ops)
    assert report.count(Outcome.SUCCEEDED) == 45
    assert env.graph.stats.batch_sizes == [20, 20, 5]

    # a create next to 19 others, its group add in a later batch once it succeeded: every
    # batch fully parallel
    group = env.graph.directory.add_group(tenant, "G")
    chained = [
        Operation(f"p{i}", "PATCH", f"/users/{users[i]['id']}", {"jobTitle": "x"})
        for i in range(19)
    ]
    chained += [_create(1), _add_member(1, group["id"], instance.settings.api_base_url)]
    env.graph.stats.batch_sizes.clear()
    env.graph.stats.batch_shapes.clear()
    async with instance.api_client() as client:
        report = await BatchEngine(client, concurrency=1).run(chained)
    assert report.count(Outcome.SUCCEEDED) == 21
    assert env.graph.stats.batch_sizes[0] == 20
    assert set(env.graph.stats.batch_sizes[1:]) == {1}  # the add (retried while replicating)
    assert set(env.graph.stats.batch_shapes) == {"parallel"}
    created = env.graph.directory.tenant(tenant).find_user(f"new00001@{DOMAIN}")
    assert created is not None
    assert created["id"] in env.graph.directory.tenant(tenant).members[group["id"]]


async def test_a_dependant_waits_until_its_root_succeeded(graph_env: Env) -> None:
    env = graph_env
    tenant = env.seed.home_tenant_id
    group = env.graph.directory.add_group(tenant, "G")
    env.graph.faults.set(fail_next=1)  # the create answers 503 (not applied)
    instance = _instance(env)
    ops = [_create(7), _add_member(7, group["id"], instance.settings.api_base_url)]
    async with instance.api_client() as client:
        report = await BatchEngine(client).run(ops)
    assert report.count(Outcome.SUCCEEDED) == 2
    assert env.graph.stats.statuses[424] == 0  # never sent before its root succeeded
    by_id = report.by_id()
    assert by_id["create-7"].attempts == 2
    assert by_id["member-7"].attempts >= 1
    assert env.graph.stats.duplicate_creates() == []
    created = env.graph.directory.tenant(tenant).find_user(f"new00007@{DOMAIN}")
    assert created is not None
    assert created["id"] in env.graph.directory.tenant(tenant).members[group["id"]]


async def test_joiners_coalesced_with_replication_delay_every_membership_present(
    graph_env: Env,
) -> None:
    env = graph_env
    tenant = env.seed.home_tenant_id
    groups = [env.graph.directory.add_group(tenant, f"G{g}") for g in range(2)]
    already = env.graph.directory.seed_users(tenant, 3)
    directory = env.graph.directory.tenant(tenant)
    directory.add_member(groups[0]["id"], already[0]["id"])  # one add is "already exist"
    instance = _instance(env)
    base = instance.settings.api_base_url
    ops: list[Operation] = []
    for n in range(60):
        ops.append(_create(n))
        ops += [
            _add_member(n, g["id"], base, op_id=f"member-{n}-{i}") for i, g in enumerate(groups)
        ]
    ops += [
        Operation(
            f"existing-{i}",
            "POST",
            f"/groups/{groups[0]['id']}/members/$ref",
            {"@odata.id": user_url(base, u["id"])},
        )
        for i, u in enumerate(already)
    ]
    async with instance.api_client() as client:
        report = await BatchEngine(
            client, retry=RetryPolicy(max_attempts=6, max_total_seconds=120, base=0.2, cap=2.0)
        ).run(ops)
    assert report.count(Outcome.SUCCEEDED) == len(ops), [
        (r.operation_id, r.status, r.error) for r in report.results if not r.succeeded
    ][:5]
    assert report.by_id()["existing-0"].resolved_conflict
    stats = env.graph.stats
    assert set(stats.batch_shapes) == {"parallel"}
    assert report.stats.member_binds > 0
    assert report.stats.replication_retries > 0
    for n in range(60):
        created = directory.find_user(f"new{n:05d}@{DOMAIN}")
        assert created is not None
        for g in groups:
            assert created["id"] in directory.members[g["id"]]
    assert all(count == 1 for count in stats.member_adds.values())
    assert stats.duplicate_creates() == []
    # the binds saved writes: 120 joiner adds in far fewer member writes
    assert report.stats.members_coalesced >= 60
    assert report.stats.member_binds < 120 // 4


async def test_a_permanently_failed_root_fails_its_dependants(graph_env: Env) -> None:
    env = graph_env
    group = env.graph.directory.add_group(env.seed.home_tenant_id, "G")
    bad = Operation("create-bad", "POST", "/users", {"displayName": "missing fields"})
    dependant = Operation(
        "member-bad",
        "POST",
        f"/groups/{group['id']}/members/$ref",
        {"@odata.id": user_url(_instance(env).settings.api_base_url, "nobody@contoso.example")},
        depends_on=("create-bad",),
    )
    instance = _instance(env)
    async with instance.api_client() as client:
        report = await BatchEngine(client).run([bad, dependant])
    by_id = report.by_id()
    assert by_id["create-bad"].outcome is Outcome.FAILED
    assert by_id["create-bad"].status == 400
    assert by_id["member-bad"].outcome is Outcome.FAILED
    assert by_id["member-bad"].status == 424


async def test_401_once_means_one_forced_refresh_then_success(graph_env: Env) -> None:
    env = graph_env
    users = env.graph.directory.seed_users(env.seed.home_tenant_id, 3)
    instance = _instance(env)
    async with instance.api_client() as client:
        first = await client.get_json(f"/users/{users[0]['id']}")
        assert first["id"] == users[0]["id"]
        before = env.endpoint_hits("keyvault-certificate")
        env.graph.revoke_all_tokens()
        again = await client.get_json(f"/users/{users[1]['id']}")
        assert again["id"] == users[1]["id"]
    assert env.endpoint_hits("keyvault-certificate") - before == 1
    assert instance.token_cache.stats.forced_refreshes == 1
    assert env.graph.stats.auth_failures == 1


async def test_delta_then_expired_token_signals_full_resync(graph_env: Env) -> None:
    env = graph_env
    tenant = env.seed.home_tenant_id
    users = env.graph.directory.seed_users(tenant, 250)
    instance = _instance(env)
    async with instance.api_client() as client:
        full = await client.delta("/users/delta", params={"$select": "id,accountEnabled"})
        assert {u["id"] for u in full.items} == {u["id"] for u in users}
        assert full.delta_link
        env.graph.directory.tenant(tenant).update_user(users[5]["id"], {"accountEnabled": False})
        incremental = await client.delta("/users/delta", full.delta_link)
        assert [u["id"] for u in incremental.items] == [users[5]["id"]]
        env.graph.expire_delta_tokens()
        with pytest.raises(DeltaTokenExpiredError):
            await client.delta("/users/delta", incremental.delta_link)


async def test_empty_pages_with_next_link_are_followed(graph_env: Env) -> None:
    env = graph_env
    users = env.graph.directory.seed_users(env.seed.home_tenant_id, 120)
    env.graph.faults.set(empty_page_rate=0.5)
    instance = _instance(env)
    async with instance.api_client() as client:
        seen = [u["id"] async for u in client.paginate("/users", {"$top": "10"})]
    assert sorted(seen) == sorted(u["id"] for u in users)
    assert env.graph.stats.faults["empty_page"] > 0


FRACTIONAL = GraphConfig(
    fractional_retry_after=True,
    app_tenant_write_limit=5,
    app_tenant_write_window=1.0,
)


@pytest.mark.parametrize("graph_env", [FRACTIONAL], indirect=True)
async def test_fractional_retry_after_is_honoured(graph_env: Env) -> None:
    env = graph_env
    users = env.graph.directory.seed_users(env.seed.home_tenant_id, 12)
    ops = [
        Operation(f"u{i}", "PATCH", f"/users/{u['id']}", {"jobTitle": "x"})
        for i, u in enumerate(users)
    ]
    instance = _instance(env)
    async with instance.api_client() as client:
        # pacing far above the budget: the API throttles with fractional Retry-After values
        engine = BatchEngine(client, pacing=PacingConfig(writes_per_second=50))
        report = await engine.run(ops)
    assert report.count(Outcome.SUCCEEDED) == 12
    events = env.graph.stats.throttle_events
    assert events
    assert any(e.retry_after_header != str(int(float(e.retry_after_header))) for e in events)
    assert env.graph.stats.early_retries == []


async def test_absolute_url_to_another_host_is_refused_before_any_request(
    graph_env: Env,
) -> None:
    env = graph_env
    users = env.graph.directory.seed_users(env.seed.home_tenant_id, 2)
    instance = _instance(env)
    ops = [
        Operation("evil", "GET", "https://attacker.example/v1.0/users"),
        Operation("ok", "PATCH", f"/users/{users[0]['id']}", {"jobTitle": "x"}),
        Operation("broken", "FROB", f"/users/{users[1]['id']}"),
    ]
    async with instance.api_client() as client:
        with pytest.raises(UnsafeRequestError):
            await client.request("GET", "https://attacker.example/v1.0/users")
        requests_before = env.graph.stats.requests
        report = await BatchEngine(client).run(ops)
    by_id = report.by_id()
    assert by_id["evil"].outcome is Outcome.FAILED
    assert "attacker.example" in (by_id["evil"].error or "")
    assert by_id["broken"].outcome is Outcome.FAILED
    assert by_id["ok"].outcome is Outcome.SUCCEEDED
    assert env.graph.stats.requests - requests_before == 1
    assert env.graph.stats.batch_sizes[-1] == 1


async def test_http2_and_throttle_priority_settings(graph_env: Env) -> None:
    env = graph_env
    users = env.graph.directory.seed_users(env.seed.home_tenant_id, 1)
    settings = env.settings(
        "keyvault-certificate", DAEMON_API_HTTP2="true", DAEMON_API_THROTTLE_PRIORITY="low"
    )
    instance = Instance(load_settings(settings))
    async with instance.api_client() as client:
        body = await client.get_json(f"/users/{users[0]['id']}")
    assert body["id"] == users[0]["id"]
    assert env.graph.stats.priorities == {"Low": 1}
    # the sandbox (uvicorn) offers HTTP/1.1 only: ALPN falls back, nothing breaks
    assert env.graph.stats.http_versions == {"1.1": 1}
