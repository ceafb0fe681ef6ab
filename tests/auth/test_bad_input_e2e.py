"""Bad configuration and refused credentials: a specific error type, a message naming the
setting or resource, and no secret in it. Against the sandbox, with the real SDKs."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from shared.errors import (
    CertificateError,
    KeyVaultAccessDeniedError,
    KeyVaultNotFoundError,
    TenantNotAllowedError,
    TokenRequestError,
)
from shared.instance import Instance
from shared.settings import load_settings
from tests.auth.conftest import Env

UNKNOWN_TENANT = "99999999-9999-9999-9999-999999999999"


def _assert_no_secret(env: Env, message: str) -> None:
    for secret in env.state.secret_values():
        if len(secret) >= 16:
            assert secret not in message


async def test_key_vault_403_names_vault_certificate_and_role(fresh_env: Env) -> None:
    env = fresh_env
    env.state.revoke_vault_role(env.seed.system_identity_object_id)
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    with pytest.raises(KeyVaultAccessDeniedError) as caught:
        await instance.token_cache.get_token()
    message = str(caught.value)
    assert "daemon-cert" in message
    assert env.sandbox.url in message
    assert "Key Vault Certificate User" in message
    assert env.state.counter("token_requests") == 0  # nothing sent to Entra ID


async def test_key_vault_403_on_sign_names_crypto_role(fresh_env: Env) -> None:
    env = fresh_env
    env.state.revoke_vault_role(env.seed.system_identity_object_id, "Key Vault Crypto User")
    instance = Instance(load_settings(env.settings("keyvault-signing")))
    with pytest.raises(KeyVaultAccessDeniedError, match="Key Vault Crypto User"):
        await instance.token_cache.get_token()


async def test_key_vault_404_names_the_certificate(env: Env) -> None:
    settings = env.settings("keyvault-certificate", DAEMON_CERTIFICATE_NAME="no-such-cert")
    instance = Instance(load_settings(settings))
    with pytest.raises(KeyVaultNotFoundError, match="no-such-cert"):
        await instance.token_cache.get_token()


async def test_disabled_certificate_is_a_clear_error(fresh_env: Env) -> None:
    env = fresh_env
    env.state.disable_certificate_version(env.seed.certificate_name)
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    with pytest.raises(CertificateError) as caught:
        await instance.token_cache.get_token()
    assert "daemon-cert" in str(caught.value)
    assert "disabled" in str(caught.value)


@pytest.mark.parametrize(
    ("offsets", "word"), [((-400, -10), "expired"), ((86400, 86400 * 400), "not yet valid")]
)
async def test_expired_or_not_yet_valid_certificate_names_its_dates(
    fresh_env: Env, offsets: tuple[int, int], word: str
) -> None:
    env = fresh_env
    now = time.time()
    version = env.state.add_certificate_version(
        env.seed.certificate_name,
        not_before=now - 86400 * 500 if word == "expired" else now + offsets[0],
        not_after=now + offsets[1] * 86400 if word == "expired" else now + offsets[1],
        register_with_app=env.seed.client_id,
    )
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    with pytest.raises(CertificateError) as caught:
        await instance.token_cache.get_token()
    message = str(caught.value)
    assert word in message
    assert version.version in message
    expected_end = dt.datetime.fromtimestamp(version.not_after, dt.timezone.utc)
    assert expected_end.strftime("%Y-%m-%d") in message


@pytest.mark.parametrize(
    ("content_type", "value", "fragment"),
    [
        ("application/x-pkcs12", "bm90IGEgcGZ4", "not a readable PFX"),
        ("application/x-pkcs12", "%%% not base64 %%%", "not a readable PFX"),
        (
            "application/x-pem-file",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "PEM private key cannot be read",
        ),
    ],
)
async def test_malformed_pfx_or_pem(
    fresh_env: Env, content_type: str, value: str, fragment: str
) -> None:
    env = fresh_env
    version = env.state.certificate_version(env.seed.certificate_name)
    assert version is not None
    version.secret_value = value
    version.content_type = content_type
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    with pytest.raises(CertificateError, match=fragment) as caught:
        await instance.token_cache.get_token()
    assert "daemon-cert" in str(caught.value)


async def test_pem_certificate_works(fresh_env: Env) -> None:
    env = fresh_env
    env.state.add_certificate_version(
        env.seed.certificate_name,
        content_type="application/x-pem-file",
        register_with_app=env.seed.client_id,
    )
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    token = await instance.token_cache.get_token()
    env.sandbox.issuer.verify(token, ["https://graph.microsoft.com"])


async def test_export_mode_on_a_non_exportable_key_says_use_signing(env: Env) -> None:
    settings = env.settings(
        "keyvault-certificate", DAEMON_CERTIFICATE_NAME=env.seed.signing_certificate_name
    )
    instance = Instance(load_settings(settings))
    with pytest.raises(CertificateError, match="keyvault-signing"):
        await instance.token_cache.get_token()


async def test_assertion_the_sandbox_rejects(fresh_env: Env) -> None:
    env = fresh_env
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    info = instance.credential.certificate()
    assert info is not None
    env.state.unregister_app_certificate(env.seed.client_id, info.thumbprint_s256)
    with pytest.raises(TokenRequestError) as caught:
        await instance.token_cache.get_token()
    assert 700027 in caught.value.codes
    assert env.seed.home_tenant_id in str(caught.value)
    # one reload and one retry, then the refusal surfaces
    assert env.state.counter("rejections.AADSTS700027") == 2
    _assert_no_secret(env, str(caught.value))


async def test_bad_client_secret_is_not_retried_and_not_echoed(env: Env) -> None:
    bad = "wrong-secret-value-0123456789"
    settings = env.settings("client-secret", DAEMON_CLIENT_SECRET=bad)
    instance = Instance(load_settings(settings))
    with pytest.raises(TokenRequestError) as caught:
        await instance.token_cache.get_token()
    assert 7000215 in caught.value.codes
    assert bad not in str(caught.value)


async def test_unknown_tenant(env: Env) -> None:
    settings = env.settings("keyvault-certificate", DAEMON_ALLOWED_TENANTS=UNKNOWN_TENANT)
    instance = Instance(load_settings(settings))
    with pytest.raises(TokenRequestError) as caught:
        await instance.token_cache.get_token(UNKNOWN_TENANT)
    assert 90002 in caught.value.codes
    assert UNKNOWN_TENANT in str(caught.value)


async def test_tenant_without_consent(env: Env) -> None:
    tenant = env.seed.unconsented_tenant_id
    settings = env.settings("federated-managed-identity", DAEMON_ALLOWED_TENANTS=tenant)
    instance = Instance(load_settings(settings))
    with pytest.raises(TokenRequestError) as caught:
        await instance.token_cache.get_token(tenant)
    assert 700016 in caught.value.codes


async def test_tenant_not_allowed_is_refused_before_any_request(env: Env) -> None:
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    before = env.state.counters()
    with pytest.raises(TenantNotAllowedError, match=env.seed.unconsented_tenant_id):
        await instance.token_cache.get_token(env.seed.unconsented_tenant_id)
    assert env.state.counters() == before
