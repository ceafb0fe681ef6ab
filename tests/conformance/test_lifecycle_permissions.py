"""employeeLeaveDateTime needs the lifecycle permissions (enforced by default).

learn.microsoft.com/graph/api/resources/user (employeeLeaveDateTime): reading it needs
User-LifeCycleInfo.Read.All (or .ReadWrite.All), writing it User-LifeCycleInfo.ReadWrite.All.
Without them Graph answers 403 Authorization_RequestDenied for requests that select, filter on
or write the property. The seeded app has them (the sweep's leaver rule reads the property);
``seed_default(graph_roles=GRAPH_ROLES_WITHOUT_LIFECYCLE)`` seeds an app without them.
"""

from __future__ import annotations

import pytest

from sandbox.graph import GraphConfig
from sandbox.seed import GRAPH_ROLES, GRAPH_ROLES_WITHOUT_LIFECYCLE
from sandbox.tokens import split_jwt

from .conftest import Strict, StrictFactory, graph_error

LEAVE = "2024-01-31T17:00:00Z"


def reads(strict: Strict, user_id: str) -> list[int]:
    http = strict.http
    return [
        http.get(
            f"/v1.0/users/{user_id}", params={"$select": "id,employeeLeaveDateTime"}
        ).status_code,
        http.get("/v1.0/users", params={"$select": "id,employeeLeaveDateTime"}).status_code,
        http.get(
            "/v1.0/users", params={"$filter": f"employeeLeaveDateTime le {LEAVE}"}
        ).status_code,
        http.get("/v1.0/users/delta", params={"$select": "id,employeeLeaveDateTime"}).status_code,
    ]


def write(strict: Strict, user_id: str) -> int:
    body = {"employeeLeaveDateTime": LEAVE}
    return strict.http.patch(f"/v1.0/users/{user_id}", json=body).status_code


def test_enforced_by_default() -> None:
    assert GraphConfig().require_lifecycle_role is True


def test_the_default_app_reads_and_writes_it(strict: Strict) -> None:
    token = strict.http.headers["Authorization"].split()[1]
    assert "User-LifeCycleInfo.ReadWrite.All" in split_jwt(token)[1]["roles"]
    user = strict.sandbox.graph.directory.seed_users(strict.tenant, 1, leavers=1)[0]
    assert reads(strict, user["id"]) == [200, 200, 200, 200]
    assert write(strict, user["id"]) == 204


def test_an_app_without_the_lifecycle_roles_gets_403(strict_factory: StrictFactory) -> None:
    strict = strict_factory(graph_roles=GRAPH_ROLES_WITHOUT_LIFECYCLE)
    user = strict.sandbox.graph.directory.seed_users(strict.tenant, 1, leavers=1)[0]
    assert reads(strict, user["id"]) == [403, 403, 403, 403]
    assert write(strict, user["id"]) == 403
    refused = strict.http.get("/v1.0/users", params={"$select": "id,employeeLeaveDateTime"})
    graph_error(refused, 403, "Authorization_RequestDenied")
    # other properties stay readable and writable
    assert strict.http.get("/v1.0/users", params={"$select": "id,employeeId"}).status_code == 200
    patched = strict.http.patch(f"/v1.0/users/{user['id']}", json={"department": "Sales"})
    assert patched.status_code == 204


@pytest.mark.parametrize("role", ["User-LifeCycleInfo.Read.All"])
def test_the_read_role_reads_but_does_not_write(strict_factory: StrictFactory, role: str) -> None:
    strict = strict_factory(graph_roles=(*GRAPH_ROLES_WITHOUT_LIFECYCLE, role))
    user = strict.sandbox.graph.directory.seed_users(strict.tenant, 1, leavers=1)[0]
    assert reads(strict, user["id"]) == [200, 200, 200, 200]
    assert write(strict, user["id"]) == 403
    assert set(GRAPH_ROLES) - set(GRAPH_ROLES_WITHOUT_LIFECYCLE) == {
        "User-LifeCycleInfo.ReadWrite.All"
    }
