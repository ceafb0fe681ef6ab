"""Entra ID stand-in, driven by the real azure-identity credentials and by raw requests."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential, ClientSecretCredential
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.seed import GRAPH_ROLES, Seed
from sandbox.server import Sandbox
from sandbox.state import CertificateVersion
from sandbox.tokens import split_jwt
from tests.sandbox.conftest import (
    ASSERTION_TYPE,
    GRAPH_SCOPE,
    build_assertion,
    token_endpoint,
)


def claims_of(token: str) -> dict[str, Any]:
    return split_jwt(token)[1]


def daemon_cert(sandbox: Sandbox) -> CertificateVersion:
    version = sandbox.state.certificate_version("daemon-cert")
    assert version is not None
    return version


def post_token(http: httpx.Client, sandbox: Sandbox, tenant: str, **form: str) -> httpx.Response:
    body = {"grant_type": "client_credentials", "scope": GRAPH_SCOPE, **form}
    return http.post(token_endpoint(sandbox, tenant), data=body)


def assertion_form(
    sandbox: Sandbox,
    seed: Seed,
    tenant: str | None = None,
    key: rsa.RSAPrivateKey | None = None,
    **overrides: Any,
) -> dict[str, str]:
    cert = daemon_cert(sandbox)
    tenant = tenant or seed.home_tenant_id
    assertion = build_assertion(
        key or cert.private_key,
        cert,
        client_id=seed.client_id,
        audience=overrides.pop("audience", token_endpoint(sandbox, tenant)),
        **overrides,
    )
    return {
        "client_id": seed.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }


def assert_aadsts(response: httpx.Response, status: int, error: str, code: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "Trace ID: " in body["error_description"]
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()
    return str(body["error_description"])


# ------------------------------------------------------------------------ real SDK paths


def test_client_assertion_credential_gets_a_token_with_only_consented_roles(
    env: Sandbox, seed: Seed
) -> None:
    cert = daemon_cert(env)
    calls: list[int] = []

    def assertion() -> str:
        calls.append(1)
        return build_assertion(
            cert.private_key,
            cert,
            client_id=seed.client_id,
            audience=token_endpoint(env, seed.home_tenant_id),
        )

    credential = ClientAssertionCredential(
        seed.home_tenant_id, seed.client_id, assertion, authority=env.url
    )
    token = credential.get_token(GRAPH_SCOPE)
    claims = claims_of(token.token)
    sp = env.state.service_principal(seed.home_tenant_id, seed.client_id)
    assert sp is not None
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"{env.url}/{seed.home_tenant_id}/v2.0"
    assert claims["tid"] == seed.home_tenant_id
    assert claims["appid"] == claims["azp"] == seed.client_id
    assert claims["oid"] == sp.object_id
    assert claims["idtyp"] == "app"
    assert claims["ver"] == "2.0"
    assert sorted(claims["roles"]) == sorted(GRAPH_ROLES)
    assert token.expires_on > time.time() + 3000
    assert calls == [1]
    # Cached by the credential: no new assertion, no new request.
    credential.get_token(GRAPH_SCOPE)
    assert calls == [1]


def test_client_secret_credential_goes_through_msal_discovery(env: Sandbox, seed: Seed) -> None:
    before = env.state.counter("entra.requests.openid-configuration")
    credential = ClientSecretCredential(
        seed.home_tenant_id,
        seed.client_id,
        seed.client_secret,
        authority=env.url,
        disable_instance_discovery=True,
    )
    token = credential.get_token(GRAPH_SCOPE)
    assert claims_of(token.token)["appid"] == seed.client_id
    assert env.state.counter("entra.requests.openid-configuration") == before + 1


def test_the_localhost_name_and_a_second_consented_tenant_work(env: Sandbox, seed: Seed) -> None:
    cert = daemon_cert(env)
    audience = f"{env.alt_url}/{seed.second_tenant_id}/oauth2/v2.0/token"
    credential = ClientAssertionCredential(
        seed.second_tenant_id,
        seed.client_id,
        lambda: build_assertion(
            cert.private_key, cert, client_id=seed.client_id, audience=audience
        ),
        authority=env.alt_url,
    )
    claims = claims_of(credential.get_token(GRAPH_SCOPE).token)
    assert claims["tid"] == seed.second_tenant_id
    home_sp = env.state.service_principal(seed.home_tenant_id, seed.client_id)
    assert home_sp is not None
    assert claims["oid"] != home_sp.object_id  # one service principal per tenant


def test_the_sdk_surfaces_the_aadsts_error(env: Sandbox, seed: Seed) -> None:
    credential = ClientSecretCredential(
        seed.home_tenant_id,
        seed.client_id,
        "not-the-secret-at-all-000",
        authority=env.url,
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token(GRAPH_SCOPE)


def test_a_token_without_consent_carries_no_roles_claim(fresh_env: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh_env
    sandbox.state.revoke_consent(seed.home_tenant_id, seed.client_id)
    credential = ClientSecretCredential(
        seed.home_tenant_id,
        seed.client_id,
        seed.client_secret,
        authority=sandbox.url,
        disable_instance_discovery=True,
    )
    assert "roles" not in claims_of(credential.get_token(GRAPH_SCOPE).token)


# ------------------------------------------------------------------------------ discovery


def test_openid_configuration_and_jwks(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    config = http.get(
        f"{sandbox.url}/{seed.home_tenant_id}/v2.0/.well-known/openid-configuration"
    ).json()
    assert config["token_endpoint"] == token_endpoint(sandbox, seed.home_tenant_id)
    assert config["issuer"] == f"{sandbox.url}/{seed.home_tenant_id}/v2.0"
    keys = http.get(config["jwks_uri"]).json()["keys"]
    assert keys == sandbox.issuer.jwks()["keys"]
    missing = http.get(f"{sandbox.url}/nope/v2.0/.well-known/openid-configuration")
    assert_aadsts(missing, 400, "invalid_tenant", 90002)


# ---------------------------------------------------------------------------- rejections


def test_a_successful_raw_request_accepts_and_ignores_claims(
    http: httpx.Client, sandbox: Sandbox, seed: Seed
) -> None:
    form = assertion_form(sandbox, seed)
    response = post_token(
        http,
        sandbox,
        seed.home_tenant_id,
        claims='{"access_token":{"xms_cc":{"values":["CP1"]}}}',
        **form,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3600
    assert "refresh_in" not in body


def test_bad_signature_is_700027(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = post_token(
        http, sandbox, seed.home_tenant_id, **assertion_form(sandbox, seed, key=other)
    )
    description = assert_aadsts(response, 401, "invalid_client", 700027)
    assert "failed signature validation" in description


def test_unregistered_certificate_is_700027(
    http: httpx.Client, sandbox: Sandbox, seed: Seed
) -> None:
    form = assertion_form(sandbox, seed, header_overrides={"x5t#S256": "AAAA" * 10})
    description = assert_aadsts(
        post_token(http, sandbox, seed.home_tenant_id, **form), 401, "invalid_client", 700027
    )
    assert "not registered on application" in description


def test_replayed_jti_is_refused(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    form = assertion_form(sandbox, seed)
    assert post_token(http, sandbox, seed.home_tenant_id, **form).status_code == 200
    again = post_token(http, sandbox, seed.home_tenant_id, **form)
    assert "replay" in assert_aadsts(again, 401, "invalid_client", 700027)


def test_missing_jti_is_50027(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    form = assertion_form(sandbox, seed, jti=None)
    assert_aadsts(
        post_token(http, sandbox, seed.home_tenant_id, **form), 401, "invalid_client", 50027
    )


@pytest.mark.parametrize(
    "audience",
    [
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        "{url}/{other}/oauth2/v2.0/token",
        "{url}/{tenant}/oauth2/token",
    ],
)
def test_wrong_audience_is_700023(
    http: httpx.Client, sandbox: Sandbox, seed: Seed, audience: str
) -> None:
    aud = audience.format(url=sandbox.url, tenant=seed.home_tenant_id, other=seed.second_tenant_id)
    form = assertion_form(sandbox, seed, audience=aud)
    assert_aadsts(
        post_token(http, sandbox, seed.home_tenant_id, **form), 401, "invalid_client", 700023
    )


def test_issuer_other_than_client_id_is_700021(
    http: httpx.Client, sandbox: Sandbox, seed: Seed
) -> None:
    form = assertion_form(sandbox, seed, iss="someone-else", sub="someone-else")
    assert_aadsts(
        post_token(http, sandbox, seed.home_tenant_id, **form), 401, "invalid_client", 700021
    )


def test_expired_assertion_is_700024(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    now = int(time.time())
    form = assertion_form(sandbox, seed, iat=now - 3600, nbf=now - 3600, exp=now - 1800)
    description = assert_aadsts(
        post_token(http, sandbox, seed.home_tenant_id, **form), 401, "invalid_client", 700024
    )
    assert "not within its valid time range" in description


def test_not_yet_valid_assertion_is_700024_and_a_long_lived_one_is_accepted(
    http: httpx.Client, sandbox: Sandbox, seed: Seed
) -> None:
    now = int(time.time())
    future = assertion_form(sandbox, seed, iat=now + 3600, nbf=now + 3600, exp=now + 3900)
    assert_aadsts(
        post_token(http, sandbox, seed.home_tenant_id, **future), 401, "invalid_client", 700024
    )
    # Entra ID "doesn't place restrictions on the exp time currently"
    long_lived = assertion_form(sandbox, seed, exp=now + 7200)
    response = post_token(http, sandbox, seed.home_tenant_id, **long_lived)
    assert response.status_code == 200, response.text


def test_bad_secret_is_7000215(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    response = post_token(
        http,
        sandbox,
        seed.home_tenant_id,
        client_id=seed.client_id,
        client_secret="wrong-secret-value-123",
    )
    assert_aadsts(response, 401, "invalid_client", 7000215)


def test_unknown_tenant_is_90002(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    response = post_token(
        http,
        sandbox,
        "00000000-0000-0000-0000-000000000001",
        client_id=seed.client_id,
        client_secret=seed.client_secret,
    )
    assert_aadsts(response, 400, "invalid_request", 90002)


def test_unknown_app_is_700016(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    response = post_token(
        http,
        sandbox,
        seed.home_tenant_id,
        client_id="11111111-1111-1111-1111-111111111111",
        client_secret=seed.client_secret,
    )
    assert_aadsts(response, 400, "unauthorized_client", 700016)


def test_unconsented_tenant_is_700016(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    form = assertion_form(sandbox, seed, tenant=seed.unconsented_tenant_id)
    description = assert_aadsts(
        post_token(http, sandbox, seed.unconsented_tenant_id, **form),
        400,
        "unauthorized_client",
        700016,
    )
    assert "consented" in description


def test_missing_home_service_principal_is_7000229(fresh: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh
    sandbox.state.delete_service_principal(seed.home_tenant_id, seed.client_id)
    with httpx.Client(verify=sandbox.client_ssl_context()) as http:
        response = post_token(
            http,
            sandbox,
            seed.home_tenant_id,
            client_id=seed.client_id,
            client_secret=seed.client_secret,
        )
    assert_aadsts(response, 401, "invalid_client", 7000229)


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        ("https://graph.microsoft.com/User.Read.All", 1002012),
        ("https://graph.microsoft.com/.default offline_access", 1002012),
        ("https://graph.microsoft.com/.default https://vault.azure.net/.default", 700022),
    ],
)
def test_non_static_scopes_are_invalid_scope(
    http: httpx.Client, sandbox: Sandbox, seed: Seed, scope: str, code: int
) -> None:
    response = post_token(
        http,
        sandbox,
        seed.home_tenant_id,
        client_id=seed.client_id,
        client_secret=seed.client_secret,
        scope=scope,
    )
    assert_aadsts(response, 400, "invalid_scope", code)


def test_unknown_resource_is_500011(http: httpx.Client, sandbox: Sandbox, seed: Seed) -> None:
    response = post_token(
        http,
        sandbox,
        seed.home_tenant_id,
        client_id=seed.client_id,
        client_secret=seed.client_secret,
        scope="https://nope.example/.default",
    )
    assert_aadsts(response, 400, "invalid_resource", 500011)


def test_other_grant_types_and_missing_credentials(
    http: httpx.Client, sandbox: Sandbox, seed: Seed
) -> None:
    response = post_token(
        http,
        sandbox,
        seed.home_tenant_id,
        client_id=seed.client_id,
        client_secret=seed.client_secret,
        grant_type="password",
    )
    assert_aadsts(response, 400, "unsupported_grant_type", 70003)
    response = post_token(http, sandbox, seed.home_tenant_id, client_id=seed.client_id)
    assert_aadsts(response, 401, "invalid_client", 7000218)


def test_expired_registered_certificate_is_7000274(fresh: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh
    now = time.time()
    old = sandbox.state.add_certificate_version(
        "daemon-cert",
        not_before=now - 7200,
        not_after=now - 3600,
        register_with_app=seed.client_id,
    )
    assertion = build_assertion(
        old.private_key,
        old,
        client_id=seed.client_id,
        audience=token_endpoint(sandbox, seed.home_tenant_id),
    )
    with httpx.Client(verify=sandbox.client_ssl_context()) as http:
        response = post_token(
            http,
            sandbox,
            seed.home_tenant_id,
            client_id=seed.client_id,
            client_assertion_type=ASSERTION_TYPE,
            client_assertion=assertion,
        )
    assert_aadsts(response, 401, "invalid_client", 7000274)


def test_unregistering_a_certificate_turns_it_away(fresh: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh
    cert = daemon_cert(sandbox)
    sandbox.state.unregister_app_certificate(seed.client_id, cert.x5t)
    with httpx.Client(verify=sandbox.client_ssl_context()) as http:
        response = post_token(http, sandbox, seed.home_tenant_id, **assertion_form(sandbox, seed))
    assert_aadsts(response, 401, "invalid_client", 700027)


def test_fault_injection_refresh_in_and_counters(fresh: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh
    state = sandbox.state
    state.fail_next_token_requests(2, 90006)
    state.refresh_in = 1800
    form = {"client_id": seed.client_id, "client_secret": seed.client_secret}
    with httpx.Client(verify=sandbox.client_ssl_context()) as http:
        first = post_token(http, sandbox, seed.home_tenant_id, **form)
        second = post_token(http, sandbox, seed.home_tenant_id, **form)
        third = post_token(http, sandbox, seed.home_tenant_id, **form)
    assert_aadsts(first, 503, "temporarily_unavailable", 90006)
    assert second.status_code == 503
    assert third.status_code == 200
    assert third.json()["refresh_in"] == 1800
    counters = state.counters()
    assert counters["token_requests"] == 3
    assert counters[f"token_requests.tenant.{seed.home_tenant_id}"] == 3
    assert counters[f"token_requests.client.{seed.client_id}"] == 3
    assert counters[f"token_requests.scope.{GRAPH_SCOPE}"] == 3
    assert counters["rejections.AADSTS90006"] == 2
    assert counters["tokens_issued"] == 1


def test_certificate_credential_signs_rs256_with_sha1_x5t(env: Sandbox, seed: Seed) -> None:
    from azure.identity import CertificateCredential
    from cryptography.hazmat.primitives import serialization

    cert = daemon_cert(env)
    pem = cert.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.certificate.public_bytes(serialization.Encoding.PEM)
    credential = CertificateCredential(
        seed.home_tenant_id,
        seed.client_id,
        certificate_data=pem,
        authority=env.url,
        disable_instance_discovery=True,
    )
    claims = claims_of(credential.get_token(GRAPH_SCOPE).token)
    assert claims["azpacr"] == "2"
    assert claims["appid"] == seed.client_id
