"""Authentication (401) and app-role authorization (403), with Graph's error shapes."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from sandbox.graph import GraphService
from sandbox.tokens import TokenIssuer
from tests.clock import FakeClock

from .conftest import APP, TENANT, TokenFactory

WWW = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)


def assert_graph_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    inner = error["innerError"]
    assert set(inner) >= {"date", "request-id", "client-request-id"}
    assert response.headers["request-id"] == inner["request-id"]
    return dict(error)


async def test_missing_token_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1.0/users", headers={"client-request-id": "abc"})
    error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert response.headers["WWW-Authenticate"] == WWW
    assert error["message"] == "Access token is empty."
    assert response.json()["error"]["innerError"]["client-request-id"] == "abc"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aud": "https://vault.azure.net"}, "Invalid audience."),
        ({"lifetime": -5}, "Lifetime validation failed, the token is expired."),
    ],
)
async def test_bad_tokens_are_401(
    client: httpx.AsyncClient, token: TokenFactory, kwargs: dict[str, object], message: str
) -> None:
    response = await client.get(
        "/v1.0/users", headers={"Authorization": f"Bearer {token(**kwargs)}"}
    )
    error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert error["message"] == message
    assert response.headers["WWW-Authenticate"] == WWW


async def test_tampered_token_is_401(client: httpx.AsyncClient, token: TokenFactory) -> None:
    good = token()
    head, body, sig = good.split(".")
    bad = f"{head}.{body}.{sig[:-4]}AAAA"
    response = await client.get("/v1.0/users", headers={"Authorization": f"Bearer {bad}"})
    assert_graph_error(response, 401, "InvalidAuthenticationToken")


async def test_guid_audience_is_accepted(client: httpx.AsyncClient, token: TokenFactory) -> None:
    t = token(aud="00000003-0000-0000-c000-000000000000")
    response = await client.get("/v1.0/users", headers={"Authorization": f"Bearer {t}"})
    assert response.status_code == 200


async def test_revoked_token_is_401(clock: FakeClock) -> None:
    issuer = TokenIssuer()  # own issuer: revocation is issuer-wide
    service = GraphService(issuer, clock=clock)
    app = Starlette(routes=[Mount("/v1.0", routes=service.routes())])
    claims = {
        "aud": "https://graph.microsoft.com",
        "tid": TENANT,
        "appid": APP,
        "idtyp": "app",
        "roles": ["User.Read.All"],
    }
    tok, _ = issuer.issue(claims, 3600)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://g"
    ) as client:
        headers = {"Authorization": f"Bearer {tok}"}
        assert (await client.get("/v1.0/users", headers=headers)).status_code == 200
        service.revoke_all_tokens()
        response = await client.get("/v1.0/users", headers=headers)
        error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
        assert error["message"] == "Access token has been revoked."


FORBIDDEN_MESSAGE = "Insufficient privileges to complete the operation."


@pytest.mark.parametrize(
    ("roles", "method", "url", "body", "allowed"),
    [
        ([], "GET", "/v1.0/users", None, False),
        (None, "GET", "/v1.0/users", None, False),  # no roles claim at all
        (["User.Read.All"], "GET", "/v1.0/users", None, True),
        (["Directory.Read.All"], "GET", "/v1.0/users", None, True),
        (["User.Read.All"], "PATCH", "/v1.0/users/u1@contoso.example", {"department": "x"}, False),
        (
            ["User.ReadWrite.All"],
            "PATCH",
            "/v1.0/users/u1@contoso.example",
            {"department": "x"},
            True,
        ),
        (
            ["User.Read.All"],
            "POST",
            "/v1.0/users/u1@contoso.example/revokeSignInSessions",
            None,
            False,
        ),
        (
            ["User.RevokeSessions.All"],
            "POST",
            "/v1.0/users/u1@contoso.example/revokeSignInSessions",
            None,
            True,
        ),
        (["User.ReadWrite.All"], "GET", "/v1.0/groups", None, False),
        (["GroupMember.ReadWrite.All"], "GET", "/v1.0/groups", None, True),
    ],
)
async def test_app_roles(
    client: httpx.AsyncClient,
    service: GraphService,
    token: TokenFactory,
    roles: list[str] | None,
    method: str,
    url: str,
    body: dict[str, object] | None,
    allowed: bool,
) -> None:
    service.directory.add_user(TENANT, userPrincipalName="u1@contoso.example")
    t = token(roles or [], omit_roles=roles is None)
    response = await client.request(
        method, url, json=body, headers={"Authorization": f"Bearer {t}"}
    )
    if allowed:
        assert response.status_code in (200, 204)
    else:
        error = assert_graph_error(response, 403, "Authorization_RequestDenied")
        assert error["message"] == FORBIDDEN_MESSAGE
        assert service.stats.forbidden == 1


async def test_data_is_per_tenant(
    client: httpx.AsyncClient, service: GraphService, token: TokenFactory
) -> None:
    service.directory.seed_users(TENANT, 3)
    other = token(tenant="99999999-9999-9999-9999-999999999999")
    response = await client.get("/v1.0/users", headers={"Authorization": f"Bearer {other}"})
    assert response.json()["value"] == []
