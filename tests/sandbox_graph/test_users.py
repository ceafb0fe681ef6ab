"""Users: CRUD, error shapes, $select, $filter, $top, $count and paging."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.graph import GraphService
from sandbox.graph.odata import parse_filter
from sandbox.graph.schema import USER_PROPERTIES

from .conftest import TENANT
from .test_auth import assert_graph_error

NEW_USER = {
    "accountEnabled": True,
    "displayName": "Ada Lovelace",
    "mailNickname": "ada",
    "userPrincipalName": "ada@contoso.example",
    "passwordProfile": {"password": "Secret-123!"},
    "employeeId": "E9000",
}


async def test_create_get_patch_delete(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    created = await client.post("/v1.0/users", json=NEW_USER, headers=auth)
    assert created.status_code == 201
    user = created.json()
    assert user["userPrincipalName"] == "ada@contoso.example"
    assert "passwordProfile" not in user
    assert "employeeId" not in user  # not in v1.0's default property set
    user_id = user["id"]

    by_upn = await client.get(
        "/v1.0/users/ADA@contoso.example",
        params={"$select": "id,employeeId,accountEnabled"},
        headers=auth,
    )
    assert by_upn.json()["id"] == user_id
    assert by_upn.json()["employeeId"] == "E9000"
    assert by_upn.json()["accountEnabled"] is True
    assert by_upn.json()["@odata.context"].endswith(
        "/v1.0/$metadata#users(id,employeeId,accountEnabled)/$entity"
    )

    patched = await client.patch(
        f"/v1.0/users/{user_id}", json={"accountEnabled": False}, headers=auth
    )
    assert patched.status_code == 204
    assert patched.content == b""
    assert service.directory.tenant(TENANT).users[user_id]["accountEnabled"] is False

    deleted = await client.delete(f"/v1.0/users/{user_id}", headers=auth)
    assert deleted.status_code == 204
    missing = await client.get(f"/v1.0/users/{user_id}", headers=auth)
    error = assert_graph_error(missing, 404, "Request_ResourceNotFound")
    assert error["message"] == (
        f"Resource '{user_id}' does not exist or one of its queried reference-property objects "
        "are not present."
    )
    assert service.stats.writes_applied == 3
    assert service.stats.user_creates == {f"{TENANT}/ada@contoso.example": 1}


async def test_duplicate_upn_is_object_conflict(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    assert (await client.post("/v1.0/users", json=NEW_USER, headers=auth)).status_code == 201
    again = dict(NEW_USER, userPrincipalName="Ada@Contoso.example")
    response = await client.post("/v1.0/users", json=again, headers=auth)
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert error["message"] == (
        "Another object with the same value for property userPrincipalName already exists."
    )
    assert error["details"] == [{"code": "ObjectConflict", "target": "userPrincipalName"}]
    assert service.stats.duplicate_creates() == []
    assert service.stats.user_create_attempts[f"{TENANT}/ada@contoso.example"] == 2


@pytest.mark.parametrize(
    "missing",
    ["accountEnabled", "displayName", "mailNickname", "userPrincipalName", "passwordProfile"],
)
async def test_create_requires_properties(
    client: httpx.AsyncClient, auth: dict[str, str], missing: str
) -> None:
    body = {k: v for k, v in NEW_USER.items() if k != missing}
    response = await client.post("/v1.0/users", json=body, headers=auth)
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert error["message"] == f"Property '{missing}' value is required but is empty or missing."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"favouriteColour": "blue"},
            "Property 'favouriteColour' does not exist as a declared property or extension "
            "property.",
        ),
        (
            {"accountEnabled": "no"},
            "Invalid value specified for property 'accountEnabled' of resource 'User'.",
        ),
        (
            {"employeeLeaveDateTime": "yesterday"},
            "Invalid value specified for property 'employeeLeaveDateTime' of resource 'User'.",
        ),
    ],
)
async def test_patch_validates(
    client: httpx.AsyncClient,
    service: GraphService,
    auth: dict[str, str],
    body: dict[str, Any],
    message: str,
) -> None:
    user = service.directory.add_user(TENANT)
    response = await client.patch(f"/v1.0/users/{user['id']}", json=body, headers=auth)
    assert assert_graph_error(response, 400, "Request_BadRequest")["message"] == message


async def test_invalid_json_body(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.post(
        "/v1.0/users", content=b"{nope", headers={**auth, "Content-Type": "application/json"}
    )
    assert_graph_error(response, 400, "BadRequest")


async def test_unknown_segment_and_method(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/v1.0/widgets", headers=auth)
    error = assert_graph_error(response, 400, "BadRequest")
    assert error["message"] == "Resource not found for the segment 'widgets'."
    response = await client.put("/v1.0/users", json={}, headers=auth)
    assert_graph_error(response, 405, "Request_BadRequest")


async def test_revoke_sign_in_sessions(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    user = service.directory.add_user(TENANT)
    for _ in range(2):
        response = await client.post(f"/v1.0/users/{user['id']}/revokeSignInSessions", headers=auth)
        assert response.status_code == 200
        assert response.json()["value"] is True
    assert service.stats.revocations[f"{TENANT}/{user['id']}"] == 2


async def list_all(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    url: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[list[Any], int]:
    response = await client.get(url, params=params, headers={**auth, **(headers or {})})
    assert response.status_code == 200, response.text
    body = response.json()
    items, pages = list(body["value"]), 1
    while "@odata.nextLink" in body:
        link = body["@odata.nextLink"]
        assert link.startswith("https://graph.test:8443/v1.0/")
        body = (await client.get(link, headers=auth)).json()
        items += body["value"]
        pages += 1
    return items, pages


async def test_paging_with_top(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.seed_users(TENANT, 25)
    items, pages = await list_all(
        client, auth, "/v1.0/users", {"$top": "10", "$select": "id,employeeId"}
    )
    assert pages == 3
    assert len({u["id"] for u in items}) == 25
    assert set(items[0]) == {"id", "employeeId"}


async def test_paging_is_stable_while_users_change(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.seed_users(TENANT, 30)
    first = (
        await client.get(
            "/v1.0/users",
            params={"$top": "10", "$filter": "accountEnabled eq true", "$select": "id"},
            headers=auth,
        )
    ).json()
    tenant = service.directory.tenant(TENANT)
    for item in first["value"]:  # disabling what was read must not skip the rest
        tenant.update_user(item["id"], {"accountEnabled": False})
    seen = [u["id"] for u in first["value"]]
    body = first
    while "@odata.nextLink" in body:
        body = (await client.get(body["@odata.nextLink"], headers=auth)).json()
        seen += [u["id"] for u in body["value"]]
    assert len(set(seen)) == 30


async def test_empty_pages_still_lead_to_everything(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.seed_users(TENANT, 30)
    service.faults.set(empty_page_rate=0.5, seed=3)
    items, pages = await list_all(client, auth, "/v1.0/users", {"$top": "10"})
    assert len(items) == 30
    assert pages > 3
    assert service.stats.faults["empty_page"] == pages - 3


@pytest.mark.parametrize("top", ["0", "1000", "-1", "ten"])
async def test_top_out_of_range(client: httpx.AsyncClient, auth: dict[str, str], top: str) -> None:
    response = await client.get("/v1.0/users", params={"$top": top}, headers=auth)
    assert response.status_code == 400


async def test_expired_skiptoken(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/v1.0/users", params={"$skiptoken": "bogus"}, headers=auth)
    assert_graph_error(response, 400, "Directory_ExpiredPageToken")


FILTERS = [
    ("employeeId eq 'E000003'", {"E000003"}),
    ("userPrincipalName eq 'USER000002@contoso.example'", {"E000002"}),
    ("startswith(displayName,'User 00000')", {f"E00000{i}" for i in range(1, 10)}),
    ("accountEnabled eq false", {"E000003", "E000004"}),
    ("employeeLeaveDateTime le 2024-06-01T00:00:00Z", {"E000001", "E000002"}),
    ("employeeLeaveDateTime lt 2024-01-31T17:00:00Z", set()),
    ("employeeLeaveDateTime ge 2024-01-31T17:00:00Z", {"E000001", "E000002"}),
    ("employeeLeaveDateTime gt 2024-01-31T17:00:00Z", set()),
    (
        "accountEnabled eq true and employeeLeaveDateTime le 2030-01-01T00:00:00Z",
        {"E000001", "E000002"},
    ),
    ("employeeId eq 'E000001' or (mail eq 'user000010@contoso.example')", {"E000001", "E000010"}),
    ("department eq 'sales' and startswith(employeeId,'E00001')", {"E000010", "E000011"}),
    ("employeeId in ('E000005', 'E000006')", {"E000005", "E000006"}),
    ("id eq '00000000-0000-0000-0000-000000000000'", set()),
]


@pytest.mark.parametrize(("expression", "expected"), FILTERS)
async def test_filters(
    client: httpx.AsyncClient,
    service: GraphService,
    auth: dict[str, str],
    expression: str,
    expected: set[str],
) -> None:
    service.directory.seed_users(TENANT, 11, leavers=2, disabled=2)
    items, _ = await list_all(
        client, auth, "/v1.0/users", {"$filter": expression, "$select": "employeeId"}
    )
    assert {u["employeeId"] for u in items} == expected


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("employeeId eq", "BadRequest"),
        ("employeeId eq 'x' and", "BadRequest"),
        ("shoeSize eq 4", "BadRequest"),
        ("startswith(accountEnabled,'t')", "Request_UnsupportedQuery"),
        ("employeeId ne 'x'", "Request_UnsupportedQuery"),
        ("not(accountEnabled eq true)", "Request_UnsupportedQuery"),
    ],
)
async def test_bad_filters(
    client: httpx.AsyncClient, auth: dict[str, str], expression: str, code: str
) -> None:
    response = await client.get("/v1.0/users", params={"$filter": expression}, headers=auth)
    assert_graph_error(response, 400, code)


async def test_advanced_query_with_count(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    service.directory.seed_users(TENANT, 5, disabled=2)
    params = {"$filter": "accountEnabled ne true", "$count": "true", "$select": "id"}
    without = await client.get("/v1.0/users", params=params, headers=auth)
    error = assert_graph_error(without, 400, "Request_BadRequest")
    assert error["message"] == "$count is not currently supported."
    response = await client.get(
        "/v1.0/users", params=params, headers={**auth, "ConsistencyLevel": "eventual"}
    )
    assert response.status_code == 200
    assert response.json()["@odata.count"] == 2


async def test_select_unknown_property(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/v1.0/users", params={"$select": "id,shoeSize"}, headers=auth)
    error = assert_graph_error(response, 400, "BadRequest")
    assert error["message"] == (
        "Could not find a property named 'shoeSize' on type 'microsoft.graph.user'."
    )


async def test_get_on_batch_is_405(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/v1.0/$batch", headers=auth)
    assert_graph_error(response, 405, "Request_BadRequest")


async def test_verified_domains_fall_back_to_the_config_and_are_set_per_tenant(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    other = dict(NEW_USER, userPrincipalName="ada@fabrikam.example")
    refused = await client.post("/v1.0/users", json=other, headers=auth)
    error = assert_graph_error(refused, 400, "Request_BadRequest")
    assert str(error["message"]).startswith("The domain portion of the userPrincipalName")
    seeded = await client.post(
        "/_sandbox/graph/seed", json={"tenant": TENANT, "verified_domains": ["Fabrikam.example"]}
    )
    assert seeded.status_code == 200
    assert (await client.post("/v1.0/users", json=other, headers=auth)).status_code == 201
    # explicit domains replace the config's fallback for that tenant
    assert (await client.post("/v1.0/users", json=NEW_USER, headers=auth)).status_code == 400
    bad = await client.post(
        "/_sandbox/graph/seed", json={"tenant": TENANT, "verified_domains": ["not a domain"]}
    )
    assert bad.status_code == 400
    assert "verified domain 'not a domain'" in bad.json()["error"]


async def test_equality_filters_follow_changes(
    client: httpx.AsyncClient, service: GraphService, auth: dict[str, str]
) -> None:
    """``employeeId eq`` is answered from an index: it must see creates, changes of the
    value and deletes exactly as a scan would, case-insensitively."""
    service.directory.seed_users(TENANT, 3)

    async def ids(expression: str) -> set[str]:
        items, _ = await list_all(client, auth, "/v1.0/users", {"$filter": expression})
        return {u["id"] for u in items}

    user_id = (await client.post("/v1.0/users", json=NEW_USER, headers=auth)).json()["id"]
    assert await ids("employeeId eq 'e9000'") == {user_id}
    patched = await client.patch(
        f"/v1.0/users/{user_id}", json={"employeeId": "E9001"}, headers=auth
    )
    assert patched.status_code == 204
    assert await ids("employeeId eq 'E9000'") == set()
    assert await ids("employeeId in ('E9001', 'E000001')") == {
        user_id,
        *await ids("employeeId eq 'E000001'"),
    }
    assert len(await ids("employeeId in ('E9001', 'E000001')")) == 2
    # a compound filter is scanned: the same answer
    assert await ids("employeeId eq 'E9001' and accountEnabled eq true") == {user_id}
    await client.delete(f"/v1.0/users/{user_id}", headers=auth)
    assert await ids("employeeId eq 'E9001'") == set()


@pytest.mark.parametrize(
    ("expression", "equals"),
    [
        ("employeeId eq 'E1'", ("employeeId", frozenset({"e1"}))),
        ("(employeeId in ('A', 'b'))", ("employeeId", frozenset({"a", "b"}))),
        ("employeeId eq 'E1' and accountEnabled eq true", None),
        ("employeeId eq 'E1' or employeeId eq 'E2'", None),
        ("not(employeeId eq 'E1')", None),
        ("accountEnabled eq true", None),
        ("startswith(employeeId,'E1')", None),
        ("employeeId in ('A', null)", None),
    ],
)
def test_filter_reports_a_single_string_equality(
    expression: str, equals: tuple[str, frozenset[str]] | None
) -> None:
    predicate, info = parse_filter(expression, USER_PROPERTIES, "User")
    assert info.equals == equals
    if equals is not None:  # the fast predicate agrees with the index
        assert predicate({"employeeId": "E1".swapcase()}) is ("e1" in equals[1])
        assert predicate({"employeeId": None}) is False
