"""The App Service managed-identity endpoint, through the real ManagedIdentityCredential."""

from __future__ import annotations

import time

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

from sandbox.seed import GRAPH_ROLES, Seed
from sandbox.server import Sandbox
from sandbox.tokens import split_jwt
from tests.sandbox.conftest import GRAPH_SCOPE


def test_system_assigned_identity(env: Sandbox, seed: Seed) -> None:
    token = ManagedIdentityCredential().get_token(GRAPH_SCOPE)
    claims = split_jwt(token.token)[1]
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"{env.url}/{seed.home_tenant_id}/v2.0"
    assert claims["sub"] == claims["oid"] == seed.system_identity_object_id
    assert claims["appid"] == seed.system_identity_client_id
    assert claims["idtyp"] == "app"
    assert sorted(claims["roles"]) == sorted(GRAPH_ROLES)
    assert token.expires_on > time.time() + 3000


def test_user_assigned_identity_by_client_id(env: Sandbox, seed: Seed) -> None:
    credential = ManagedIdentityCredential(client_id=seed.user_identity_client_id)
    claims = split_jwt(credential.get_token(GRAPH_SCOPE).token)[1]
    assert claims["oid"] == seed.user_identity_object_id
    assert claims["appid"] == seed.user_identity_client_id


def test_user_assigned_identity_by_object_id(env: Sandbox, seed: Seed) -> None:
    credential = ManagedIdentityCredential(
        identity_config={"object_id": seed.user_identity_object_id}
    )
    claims = split_jwt(credential.get_token(GRAPH_SCOPE).token)[1]
    assert claims["oid"] == seed.user_identity_object_id


def test_unknown_client_id_fails(env: Sandbox) -> None:
    credential = ManagedIdentityCredential(client_id="22222222-2222-2222-2222-222222222222")
    with pytest.raises(ClientAuthenticationError, match="Unable to load the proper Managed"):
        credential.get_token(GRAPH_SCOPE)


def test_federated_credential_exchange(env: Sandbox, seed: Seed) -> None:
    identity = ManagedIdentityCredential()

    def assertion() -> str:
        return str(identity.get_token("api://AzureADTokenExchange/.default").token)

    credential = ClientAssertionCredential(
        seed.home_tenant_id, seed.client_id, assertion, authority=env.url
    )
    claims = split_jwt(credential.get_token(GRAPH_SCOPE).token)[1]
    assert claims["appid"] == seed.client_id
    assert claims["azpacr"] == "2"
    assert sorted(claims["roles"]) == sorted(GRAPH_ROLES)


def test_federated_credential_rejects_an_untrusted_identity(env: Sandbox, seed: Seed) -> None:
    identity = ManagedIdentityCredential(client_id=seed.user_identity_client_id)
    credential = ClientAssertionCredential(
        seed.home_tenant_id,
        seed.client_id,
        lambda: identity.get_token("api://AzureADTokenExchange/.default").token,
        authority=env.url,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
        credential.get_token(GRAPH_SCOPE)


def test_federated_credential_rejects_another_audience(env: Sandbox, seed: Seed) -> None:
    identity = ManagedIdentityCredential()
    credential = ClientAssertionCredential(
        seed.home_tenant_id,
        seed.client_id,
        lambda: identity.get_token("https://vault.azure.net/.default").token,
        authority=env.url,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700212"):
        credential.get_token(GRAPH_SCOPE)


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"}, 400),
        (
            {"X-IDENTITY-HEADER": "wrong-header-value"},
            {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
            401,
        ),
        (None, {"api-version": "2017-09-01", "resource": "https://graph.microsoft.com"}, 400),
        (None, {"api-version": "2019-08-01"}, 400),
        (None, {"api-version": "2019-08-01", "resource": "https://nope.example"}, 400),
    ],
)
def test_raw_refusals(
    http: httpx.Client,
    sandbox: Sandbox,
    headers: dict[str, str] | None,
    params: dict[str, str],
    status: int,
) -> None:
    sent = {"X-IDENTITY-HEADER": sandbox.identity_header} if headers is None else headers
    response = http.get(f"{sandbox.url}/msi/token", params=params, headers=sent)
    assert response.status_code == status
    body = response.json()
    assert body["statusCode"] == status
    assert body["message"]


def test_raw_success_shape(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    response = http.get(
        f"{sandbox.url}/msi/token",
        params={
            "api-version": "2019-08-01",
            "resource": "https://vault.azure.net/.default",
            "client_id": seed.user_identity_client_id,
        },
        headers={"X-IDENTITY-HEADER": sandbox.identity_header},
    )
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str)
    assert body["resource"] == "https://vault.azure.net"
    assert body["client_id"] == seed.user_identity_client_id
    claims = split_jwt(body["access_token"])[1]
    assert claims["aud"] == "https://vault.azure.net"
    assert "roles" not in claims
