"""Key Vault: a token issued by another tenant than the vault's gets 401 "Invalid issuer".

Key Vault answers 401 with its challenge (WWW-Authenticate naming the vault's tenant) and
AKV10032 "Invalid issuer" (learn.microsoft.com/azure/key-vault/general/rest-error-codes,
401 Unauthorized), not 403.
"""

from __future__ import annotations

import httpx

from sandbox.seed import CERTIFICATE_NAME
from sandbox.state import CERTIFICATE_USER, KEY_VAULT_RESOURCE
from tests.sandbox.conftest import token_endpoint

from .conftest import Strict


def vault_token(strict: Strict, tenant: str) -> str:
    with httpx.Client(verify=strict.sandbox.client_ssl_context(), timeout=10) as client:
        response = client.post(
            token_endpoint(strict.sandbox, tenant),
            data={
                "grant_type": "client_credentials",
                "client_id": strict.seed.client_id,
                "client_secret": strict.seed.client_secret,
                "scope": f"{KEY_VAULT_RESOURCE}/.default",
            },
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def get_certificate(strict: Strict, token: str) -> httpx.Response:
    with httpx.Client(verify=strict.sandbox.client_ssl_context(), timeout=10) as client:
        return client.get(
            f"{strict.sandbox.url}/certificates/{CERTIFICATE_NAME}",
            params={"api-version": "7.5"},
            headers={"Authorization": f"Bearer {token}"},
        )


def test_a_token_of_the_vaults_tenant_is_accepted(strict: Strict) -> None:
    strict.sandbox.state.grant_vault_role(strict.seed.client_id, CERTIFICATE_USER)
    response = get_certificate(strict, vault_token(strict, strict.seed.home_tenant_id))
    assert response.status_code == 200, response.text


def test_a_token_of_another_tenant_is_401_invalid_issuer(strict: Strict) -> None:
    strict.sandbox.state.grant_vault_role(strict.seed.client_id, CERTIFICATE_USER)
    response = get_certificate(strict, vault_token(strict, strict.seed.second_tenant_id))
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "Unauthorized"
    assert error["message"].startswith("AKV10032: Invalid issuer.")
    assert strict.seed.second_tenant_id in error["message"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(
        f'Bearer authorization="{strict.sandbox.url}/{strict.seed.home_tenant_id}"'
    )
    assert strict.sandbox.state.counter("kv.invalid_issuer") == 1
