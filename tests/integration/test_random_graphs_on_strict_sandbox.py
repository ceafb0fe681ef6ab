"""Seeded random operation graphs against the strict sandbox (replication delay on): every
batch the engine sends is accepted (fully parallel), each operation gets exactly one result,
nothing is applied twice, and every dependant ran only after its root succeeded.

Each seed builds a random mix: creates (some joined by 1–3 group adds that reference the
created user, to new or existing groups), PATCH chains of length 1–3 on existing users,
removals of existing members, and adds of existing users that are already members."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pytest

from sandbox.seed import Seed
from sandbox.server import Sandbox
from shared.instance import Instance
from shared.settings import load_settings
from shared.webapi import (
    BatchEngine,
    CreateIdentity,
    Operation,
    Outcome,
    RetryPolicy,
    directory_object_url,
    user_url,
)
from tests.sandbox_env import Env, running_sandbox

DOMAIN = "contoso.example"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[Sandbox, Seed]]:
    with running_sandbox() as value:
        yield value


def _graph(seed: int, env: Env) -> tuple[list[Operation], dict[str, list[str]]]:
    rng = random.Random(seed)
    tenant = env.seed.home_tenant_id
    directory = env.graph.directory
    base = load_settings(env.settings("keyvault-certificate")).api_base_url
    groups = [directory.add_group(tenant, f"S{seed}-G{g}")["id"] for g in range(4)]
    users = directory.seed_users(tenant, 12)
    members = {g: rng.sample(users, 3) for g in groups}
    for g, people in members.items():
        for u in people:
            directory.add_member(tenant, g, u["id"])
    ops: list[Operation] = []
    expected_members: dict[str, list[str]] = {g: [] for g in groups}
    for n in range(rng.randint(15, 40)):
        kind = rng.random()
        tag = f"s{seed}n{n}"
        if kind < 0.45:  # a joiner
            upn = f"{tag}@{DOMAIN}"
            create = Operation(
                f"create-{tag}",
                "POST",
                "/users",
                {
                    "accountEnabled": True,
                    "displayName": tag,
                    "mailNickname": tag,
                    "userPrincipalName": upn,
                    "employeeId": tag.upper()[:16],
                    "passwordProfile": {"password": "Rnd-Pa55word!"},
                },
                headers=JSON,
                idempotency=CreateIdentity(
                    f"/users?$filter=employeeId eq '{tag.upper()[:16]}'&$select=id,employeeId",
                    "employeeId",
                    tag.upper()[:16],
                ),
            )
            ops.append(create)
            for g in rng.sample(groups, rng.randint(1, 3)):
                ops.append(
                    Operation(
                        f"add-{tag}-{g[:8]}",
                        "POST",
                        f"/groups/{g}/members/$ref",
                        {"@odata.id": user_url(base, upn)},
                        headers=JSON,
                        depends_on=(create.id,),
                        reference_from=create.id,
                    )
                )
                expected_members[g].append(upn)
        elif kind < 0.75:  # a chain of updates
            user = rng.choice(users)
            previous: tuple[str, ...] = ()
            for step in range(rng.randint(1, 3)):
                op = Operation(
                    f"patch-{tag}-{step}",
                    "PATCH",
                    f"/users/{user['id']}",
                    {"jobTitle": f"{tag}-{step}"},
                    headers=JSON,
                    depends_on=previous,
                )
                ops.append(op)
                previous = (op.id,)
        elif kind < 0.9:  # an existing member added again: "already exist" is success
            g = rng.choice(groups)
            ops.append(
                Operation(
                    f"again-{tag}",
                    "POST",
                    f"/groups/{g}/members/$ref",
                    {"@odata.id": directory_object_url(base, rng.choice(members[g])["id"])},
                    headers=JSON,
                )
            )
        else:  # a removal of an existing member (each at most once)
            g = rng.choice(groups)
            if members[g]:
                u = members[g].pop()
                ops.append(
                    Operation(f"remove-{tag}", "DELETE", f"/groups/{g}/members/{u['id']}/$ref")
                )
    return ops, expected_members


@pytest.mark.parametrize("seed", range(6))
async def test_random_graphs_are_accepted_and_applied_once(
    seed: int, started: tuple[Sandbox, Seed], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(*started, monkeypatch)
    stats = env.graph.stats
    refused_before = stats.top_level_statuses[400]
    ops, expected_members = _graph(seed, env)
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    async with instance.api_client() as client:
        report = await BatchEngine(
            client, retry=RetryPolicy(max_attempts=6, max_total_seconds=120, base=0.2, cap=2.0)
        ).run(ops)
    assert [r.operation_id for r in report.results] == [o.id for o in ops]
    assert report.count(Outcome.SUCCEEDED) == len(ops), [
        (r.operation_id, r.status, r.error) for r in report.results if not r.succeeded
    ][:5]
    assert stats.top_level_statuses[400] == refused_before  # no batch refused whole
    assert set(stats.batch_shapes) <= {"parallel"}
    directory = env.graph.directory.tenant(env.seed.home_tenant_id)
    for group, upns in expected_members.items():
        for upn in upns:
            user = directory.find_user(upn)
            assert user is not None
            assert user["id"] in directory.members[group]
    assert stats.duplicate_creates() == []
    adds = Counter(k for k, v in stats.member_adds.items() for _ in range(v))
    assert all(count == 1 for count in adds.values())
