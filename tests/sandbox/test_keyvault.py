"""Key Vault stand-in, through the real azure-keyvault-* clients."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientAssertionCredential, ManagedIdentityCredential
from azure.keyvault.certificates import CertificateClient, CertificateContentType
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from sandbox.seed import Seed
from sandbox.server import Sandbox
from sandbox.state import CERTIFICATE_USER, CRYPTO_USER, SECRETS_USER
from sandbox.tokens import b64url, split_jwt
from tests.clock import FakeClock
from tests.sandbox.conftest import GRAPH_SCOPE, sha256, token_endpoint


def clients(
    sandbox: Sandbox, credential: ManagedIdentityCredential | None = None
) -> tuple[CertificateClient, SecretClient]:
    credential = credential or ManagedIdentityCredential()
    return (
        CertificateClient(sandbox.url, credential, verify_challenge_resource=False),
        SecretClient(sandbox.url, credential, verify_challenge_resource=False),
    )


def test_exportable_certificate_exports_as_pfx(env: Sandbox, seed: Seed) -> None:
    certificates, secrets = clients(env)
    cert = certificates.get_certificate("daemon-cert")
    assert cert.properties is not None
    assert cert.policy is not None
    assert cert.policy.exportable is True
    assert cert.policy.content_type == CertificateContentType.pkcs12
    assert cert.properties.enabled is True
    assert cert.secret_id is not None
    assert cert.cer is not None
    secret = secrets.get_secret("daemon-cert", cert.properties.version)
    assert secret.properties.content_type == "application/x-pkcs12"
    assert secret.properties.managed is True
    key, public, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value or ""), None)
    assert key is not None
    assert public is not None
    assert public.public_bytes(serialization.Encoding.DER) == bytes(cert.cer)
    latest = env.state.certificate_version("daemon-cert")
    assert latest is not None
    assert cert.properties.x509_thumbprint == base64.urlsafe_b64decode(latest.x5t + "=")


def test_non_exportable_certificate_secret_has_no_key(env: Sandbox, seed: Seed) -> None:
    certificates, secrets = clients(
        env, ManagedIdentityCredential(client_id=seed.user_identity_client_id)
    )
    cert = certificates.get_certificate("daemon-signing-cert")
    assert cert.properties is not None
    assert cert.policy is not None
    assert cert.policy.exportable is False
    secret = secrets.get_secret("daemon-signing-cert", cert.properties.version)
    assert secret.properties.content_type == "application/x-pem-file"
    assert "PRIVATE KEY" not in (secret.value or "")
    assert x509.load_pem_x509_certificate((secret.value or "").encode())


def test_versions_list(env: Sandbox) -> None:
    certificates, _ = clients(env)
    versions = list(certificates.list_properties_of_certificate_versions("daemon-cert"))
    assert len(versions) == 1
    assert versions[0].enabled is True


def test_key_vault_signing_builds_an_assertion_entra_accepts(env: Sandbox, seed: Seed) -> None:
    identity = ManagedIdentityCredential()
    certificates, _ = clients(env, identity)
    cert = certificates.get_certificate("daemon-signing-cert")
    assert cert.key_id is not None
    assert cert.cer is not None
    crypto = CryptographyClient(cert.key_id, identity, verify_challenge_resource=False)
    public = x509.load_der_x509_certificate(bytes(cert.cer))
    x5t_s256 = b64url(sha256(bytes(cert.cer)))

    def assertion() -> str:
        import json
        import time
        import uuid

        now = int(time.time())
        header = {"alg": "PS256", "typ": "JWT", "x5t#S256": x5t_s256}
        claims = {
            "aud": token_endpoint(env, seed.home_tenant_id),
            "iss": seed.client_id,
            "sub": seed.client_id,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        result = crypto.sign(SignatureAlgorithm.ps256, sha256(signing_input.encode()))
        key = public.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(
            result.signature,
            signing_input.encode(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
        return f"{signing_input}.{b64url(result.signature)}"

    credential = ClientAssertionCredential(
        seed.home_tenant_id, seed.client_id, assertion, authority=env.url
    )
    assert split_jwt(credential.get_token(GRAPH_SCOPE).token)[1]["appid"] == seed.client_id
    assert env.state.counter("kv.requests.sign") >= 1


def test_challenge_without_a_token(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    response = http.get(f"{sandbox.url}/certificates/daemon-cert", params={"api-version": "7.6"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer authorization="{sandbox.url}/{seed.home_tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    missing_version = http.get(f"{sandbox.url}/certificates/daemon-cert")
    assert missing_version.status_code == 400


def test_a_graph_token_is_not_a_vault_token(http: httpx.Client, sandbox: Sandbox) -> None:
    graph = http.get(
        f"{sandbox.url}/msi/token",
        params={"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
        headers={"X-IDENTITY-HEADER": sandbox.identity_header},
    ).json()["access_token"]
    response = http.get(
        f"{sandbox.url}/certificates/daemon-cert",
        params={"api-version": "7.6"},
        headers={"Authorization": f"Bearer {graph}"},
    )
    assert response.status_code == 401
    assert "audience" in response.json()["error"]["message"]


def test_unknown_names_are_404(env: Sandbox) -> None:
    certificates, secrets = clients(env)
    with pytest.raises(ResourceNotFoundError) as cert_error:
        certificates.get_certificate("nope")
    assert cert_error.value.error is not None
    assert cert_error.value.error.code == "CertificateNotFound"
    with pytest.raises(ResourceNotFoundError) as secret_error:
        secrets.get_secret("daemon-cert", "0" * 32)
    assert secret_error.value.error is not None
    assert secret_error.value.error.code == "SecretNotFound"


def test_rbac_denial_is_403(fresh_env: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh_env
    sandbox.state.revoke_vault_role(seed.system_identity_object_id, CERTIFICATE_USER, SECRETS_USER)
    certificates, secrets = clients(sandbox)
    with pytest.raises(HttpResponseError) as denied:
        secrets.get_secret("daemon-cert")
    assert denied.value.status_code == 403
    assert denied.value.error is not None
    assert denied.value.error.code == "Forbidden"
    assert denied.value.error.innererror == {"code": "ForbiddenByRbac"}
    message = str(denied.value.error.message)
    assert "secrets/getSecret/action" in message
    assert f"oid={seed.system_identity_object_id}" in message
    with pytest.raises(HttpResponseError, match="certificates/read"):
        certificates.get_certificate("daemon-cert")
    assert sandbox.state.counter("kv.forbidden") == 2
    sandbox.state.revoke_vault_role(seed.system_identity_object_id, CRYPTO_USER)


def test_disabled_version(fresh_env: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh_env
    old = sandbox.state.certificate_version("daemon-cert")
    assert old is not None
    new = sandbox.state.rotate_certificate("daemon-cert")
    sandbox.state.disable_certificate_version("daemon-cert", old.version)
    certificates, secrets = clients(sandbox)
    latest = certificates.get_certificate("daemon-cert").properties
    assert latest is not None
    assert latest.version == new.version
    with pytest.raises(HttpResponseError) as disabled:
        secrets.get_secret("daemon-cert", old.version)
    assert disabled.value.status_code == 403
    assert disabled.value.error is not None
    assert disabled.value.error.innererror == {"code": "SecretDisabled"}
    versions = {
        v.version: v.enabled
        for v in certificates.list_properties_of_certificate_versions("daemon-cert")
    }
    assert versions == {old.version: False, new.version: True}
    # the disabled version itself is still returned, marked disabled
    disabled_version = certificates.get_certificate_version("daemon-cert", old.version)
    assert disabled_version.properties is not None
    assert disabled_version.properties.enabled is False
    app = sandbox.state.find_app(seed.client_id)
    assert app is not None
    assert new.x5t_s256 in app.keys


def test_revoked_tokens_get_a_claims_challenge_the_sdk_answers(
    fresh_env: tuple[Sandbox, Seed],
) -> None:
    sandbox, _ = fresh_env
    certificates, _ = clients(sandbox)
    certificates.get_certificate("daemon-cert")
    issued = sandbox.state.counter("mi.tokens_issued")
    sandbox.state.revoke_all_tokens()
    certificates.get_certificate("daemon-cert")
    assert sandbox.state.counter("mi.tokens_issued") == issued + 1


def test_an_app_with_a_vault_role_reads_through_the_msal_path(
    fresh_env: tuple[Sandbox, Seed],
) -> None:
    from azure.identity import ClientSecretCredential

    sandbox, seed = fresh_env
    sandbox.state.grant_vault_role(seed.client_id, SECRETS_USER)
    credential = ClientSecretCredential(
        seed.home_tenant_id,
        seed.client_id,
        seed.client_secret,
        authority=sandbox.url,
        disable_instance_discovery=True,
    )
    secret = SecretClient(sandbox.url, credential, verify_challenge_resource=False)
    assert secret.get_secret("daemon-cert").value
    assert sandbox.state.counter("kv.challenges") == 1


def test_an_expired_token_gets_a_plain_challenge() -> None:
    from sandbox.seed import seed_default

    clock = FakeClock(time.time())
    with (
        Sandbox(clock=clock, token_lifetime=600) as sandbox,
        httpx.Client(verify=sandbox.client_ssl_context()) as http,
    ):
        seed = seed_default(sandbox)
        token = http.get(
            f"{sandbox.url}/msi/token",
            params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
            headers={"X-IDENTITY-HEADER": sandbox.identity_header},
        ).json()["access_token"]
        request = {
            "params": {"api-version": "7.6"},
            "headers": {"Authorization": f"Bearer {token}"},
        }
        url = f"{sandbox.url}/certificates/daemon-cert"
        assert http.get(url, params=request["params"], headers=request["headers"]).is_success
        clock.advance(601)
        expired = http.get(url, params=request["params"], headers=request["headers"])
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"] == (
            f'Bearer authorization="{sandbox.url}/{seed.home_tenant_id}", '
            'resource="https://vault.azure.net"'
        )
        assert "expired" in expired.json()["error"]["message"]
