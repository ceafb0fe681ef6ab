"""PATCH /groups/{id} with members@odata.bind: up to 20 members in one write, all or nothing.

learn.microsoft.com/graph/api/group-update ("Add multiple members to a group in a single
request", at most 20). Any member already in the group: 400 "One or more added object
references already exist for the following modified properties: 'members'."; any missing: 400
"The source resource object or one of the objects being referenced do not exist."; more than
20: 400. Nothing is added when the request fails. One request counts as one write against the
throttling budget.
"""

from __future__ import annotations

from sandbox.graph import GraphConfig

from .conftest import Strict, StrictFactory, graph_error

ALREADY = (
    "One or more added object references already exist for the following modified properties: "
    "'members'."
)
MISSING = "The source resource object or one of the objects being referenced do not exist."


def members(strict: Strict, group_id: str) -> set[str]:
    return set(strict.sandbox.graph.directory.tenant(strict.tenant).members[group_id])


def test_twenty_members_in_one_request(strict: Strict) -> None:
    users = strict.sandbox.graph.directory.seed_users(strict.tenant, 20)
    group = strict.sandbox.graph.directory.add_group(strict.tenant, "Bulk")
    binds = [
        strict.ref(u["id"], "users" if i % 2 else "directoryObjects") for i, u in enumerate(users)
    ]
    response = strict.http.patch(f"/v1.0/groups/{group['id']}", json={"members@odata.bind": binds})
    assert response.status_code == 204
    assert members(strict, group["id"]) == {u["id"] for u in users}


def test_refusals_add_nobody(strict: Strict) -> None:
    users = strict.sandbox.graph.directory.seed_users(strict.tenant, 21)
    group = strict.sandbox.graph.directory.add_group(strict.tenant, "Bulk")
    strict.sandbox.graph.directory.add_member(strict.tenant, group["id"], users[0]["id"])
    url = f"/v1.0/groups/{group['id']}"
    refs = [strict.ref(u["id"]) for u in users]

    already = strict.http.patch(url, json={"members@odata.bind": refs[1:5] + refs[:1]})
    assert graph_error(already, 400, "Request_BadRequest")["message"] == ALREADY
    missing = strict.http.patch(
        url,
        json={
            "members@odata.bind": [*refs[1:5], strict.ref("0" * 8 + "-0000-0000-0000-" + "0" * 12)]
        },
    )
    assert graph_error(missing, 400, "Request_BadRequest")["message"] == MISSING
    too_many = strict.http.patch(url, json={"members@odata.bind": refs[1:] + refs[:1]})
    assert "more than 20" in graph_error(too_many, 400, "Request_BadRequest")["message"]
    twice = strict.http.patch(url, json={"members@odata.bind": [refs[1], refs[1]]})
    assert graph_error(twice, 400, "Request_BadRequest")["message"] == ALREADY
    assert members(strict, group["id"]) == {users[0]["id"]}


def test_one_request_is_one_write(strict_factory: StrictFactory) -> None:
    # two writes per (long) window: two binds of 20 pass, the third is throttled
    strict = strict_factory(GraphConfig(app_tenant_write_limit=2, app_tenant_write_window=3600))
    users = strict.sandbox.graph.directory.seed_users(strict.tenant, 40)
    groups = [strict.sandbox.graph.directory.add_group(strict.tenant, f"G{i}") for i in range(3)]
    statuses = []
    for i, group in enumerate(groups):
        chunk = users[(i % 2) * 20 : (i % 2) * 20 + 20]
        response = strict.http.patch(
            f"/v1.0/groups/{group['id']}",
            json={"members@odata.bind": [strict.ref(u["id"]) for u in chunk]},
        )
        statuses.append(response.status_code)
    assert statuses == [204, 204, 429]
    assert strict.sandbox.graph.directory.counts(strict.tenant)["memberships"] == 40
