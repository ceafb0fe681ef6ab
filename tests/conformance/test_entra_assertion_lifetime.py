"""Entra ID accepts client assertions of any lifetime; it refuses expired, not-yet-valid,
replayed and wrongly addressed ones.

learn.microsoft.com/entra/identity-platform/certificate-credentials (claims table, ``exp``):
"Microsoft Entra ID doesn't place restrictions on the exp time currently". azure-identity's
CertificateCredential signs assertions valid for 30 minutes (async) and MSAL's (sync) path its
own; both must get a token.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from azure.core.pipeline.transport import AsyncioRequestsTransport
from azure.identity import CertificateCredential
from azure.identity.aio import CertificateCredential as AsyncCertificateCredential
from cryptography.hazmat.primitives import serialization

from sandbox.seed import CERTIFICATE_NAME
from sandbox.state import CertificateVersion
from tests.sandbox.conftest import ASSERTION_TYPE, GRAPH_SCOPE, build_assertion, token_endpoint

from .conftest import Strict


def certificate(strict: Strict) -> CertificateVersion:
    version = strict.sandbox.state.certificate_version(CERTIFICATE_NAME)
    assert version is not None
    return version


def pem(strict: Strict) -> bytes:
    cert = certificate(strict)
    return cert.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.certificate.public_bytes(serialization.Encoding.PEM)


def post_assertion(strict: Strict, **claims: Any) -> httpx.Response:
    cert = certificate(strict)
    audience = claims.pop("audience", token_endpoint(strict.sandbox, strict.tenant))
    assertion = build_assertion(
        cert.private_key, cert, client_id=strict.seed.client_id, audience=audience, **claims
    )
    with httpx.Client(verify=strict.sandbox.client_ssl_context(), timeout=10) as client:
        return client.post(
            token_endpoint(strict.sandbox, strict.tenant),
            data={
                "grant_type": "client_credentials",
                "scope": GRAPH_SCOPE,
                "client_id": strict.seed.client_id,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )


def test_the_sync_certificate_credential_gets_a_token(sdk_env: Strict) -> None:
    credential = CertificateCredential(
        sdk_env.tenant,
        sdk_env.seed.client_id,
        certificate_data=pem(sdk_env),
        authority=sdk_env.sandbox.url,
        disable_instance_discovery=True,
    )
    assert credential.get_token(GRAPH_SCOPE).token


async def test_the_async_certificate_credentials_30_minute_assertion_gets_a_token(
    sdk_env: Strict,
) -> None:
    credential = AsyncCertificateCredential(
        sdk_env.tenant,
        sdk_env.seed.client_id,
        certificate_data=pem(sdk_env),
        authority=sdk_env.sandbox.url,
        transport=AsyncioRequestsTransport(),
    )
    async with credential:
        assert (await credential.get_token(GRAPH_SCOPE)).token
    assert sdk_env.sandbox.state.counter("token_requests") >= 1


@pytest.mark.parametrize("lifetime", [600, 1800, 24 * 3600])
def test_any_lifetime_is_accepted(strict: Strict, lifetime: int) -> None:
    now = int(time.time())
    response = post_assertion(strict, iat=now, nbf=now, exp=now + lifetime)
    assert response.status_code == 200, response.text


def test_expired_not_yet_valid_replayed_and_misaddressed_are_refused(strict: Strict) -> None:
    now = int(time.time())
    expired = post_assertion(strict, iat=now - 3600, nbf=now - 3600, exp=now - 1800)
    future = post_assertion(strict, iat=now + 3600, nbf=now + 3600, exp=now + 5400)
    misaddressed = post_assertion(strict, audience="https://login.example/other/token")
    codes = [r.json()["error_codes"] for r in (expired, future, misaddressed)]
    assert codes == [[700024], [700024], [700023]]

    cert = certificate(strict)
    once = build_assertion(
        cert.private_key,
        cert,
        client_id=strict.seed.client_id,
        audience=token_endpoint(strict.sandbox, strict.tenant),
        jti="the-same-jti",
        exp=now + 1800,
    )
    statuses = []
    with httpx.Client(verify=strict.sandbox.client_ssl_context(), timeout=10) as client:
        for _ in range(2):
            response = client.post(
                token_endpoint(strict.sandbox, strict.tenant),
                data={
                    "grant_type": "client_credentials",
                    "scope": GRAPH_SCOPE,
                    "client_id": strict.seed.client_id,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": once,
                },
            )
            statuses.append(response.status_code)
    assert statuses == [200, 401]
