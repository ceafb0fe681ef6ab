"""Groups and memberships."""

from __future__ import annotations

import httpx

from sandbox.graph import GraphService

from .conftest import API_BASE, TENANT
from .test_auth import assert_graph_error
from .test_users import list_all


def ref(object_id: str) -> dict[str, str]:
    return {"@odata.id": f"{API_BASE}/directoryObjects/{object_id}"}


async def test_group_crud_and_members(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    users = service.directory.seed_users(TENANT, 7)
    created = await client.post(
        "/v1.0/groups",
        headers=auth,
        json={
            "displayName": "Leavers",
            "mailEnabled": False,
            "mailNickname": "leavers",
            "securityEnabled": True,
        },
    )
    assert created.status_code == 201
    group_id = created.json()["id"]
    for user in users:
        response = await client.post(
            f"/v1.0/groups/{group_id}/members/$ref", json=ref(user["id"]), headers=auth
        )
        assert response.status_code == 204
    again = await client.post(
        f"/v1.0/groups/{group_id}/members/$ref", json=ref(users[0]["id"]), headers=auth
    )
    error = assert_graph_error(again, 400, "Request_BadRequest")
    assert error["message"] == (
        "One or more added object references already exist for the following modified "
        "properties: 'members'."
    )
    members, pages = await list_all(
        client,
        auth,
        f"/v1.0/groups/{group_id}/members",
        {"$top": "3", "$select": "id,userPrincipalName"},
    )
    assert pages == 3
    assert {m["id"] for m in members} == {u["id"] for u in users}
    assert members[0]["@odata.type"] == "#microsoft.graph.user"

    removed = await client.delete(
        f"/v1.0/groups/{group_id}/members/{users[0]['id']}/$ref", headers=auth
    )
    assert removed.status_code == 204
    removed = await client.delete(
        f"/v1.0/groups/{group_id}/members/{users[0]['id']}/$ref", headers=auth
    )
    assert_graph_error(removed, 404, "Request_ResourceNotFound")
    missing = await client.post(
        f"/v1.0/groups/{group_id}/members/$ref",
        json=ref("00000000-0000-0000-0000-000000000000"),
        headers=auth,
    )
    assert_graph_error(missing, 404, "Request_ResourceNotFound")

    patched = await client.patch(
        f"/v1.0/groups/{group_id}", json={"description": "x"}, headers=auth
    )
    assert patched.status_code == 204
    got = await client.get(f"/v1.0/groups/{group_id}", headers=auth)
    assert got.json()["description"] == "x"
    listed = await client.get(
        "/v1.0/groups", params={"$filter": "displayName eq 'leavers'"}, headers=auth
    )
    assert [g["id"] for g in listed.json()["value"]] == [group_id]


async def test_members_bind_in_patch(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    users = service.directory.seed_users(TENANT, 21)
    group = service.directory.add_group(TENANT, "Bulk")
    binds = [f"{API_BASE}/directoryObjects/{u['id']}" for u in users]
    too_many = await client.patch(
        f"/v1.0/groups/{group['id']}", headers=auth, json={"members@odata.bind": binds}
    )
    assert_graph_error(too_many, 400, "Request_BadRequest")
    ok = await client.patch(
        f"/v1.0/groups/{group['id']}", headers=auth, json={"members@odata.bind": binds[:20]}
    )
    assert ok.status_code == 204
    assert service.directory.counts(TENANT)["memberships"] == 20


async def test_group_create_requires_properties(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post("/v1.0/groups", json={"displayName": "x"}, headers=auth)
    assert_graph_error(response, 400, "Request_BadRequest")
