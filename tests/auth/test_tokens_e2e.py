"""From app settings to a cached token, in every auth mode, against the sandbox over HTTPS.

The real azure-identity and azure-keyvault SDKs talk to the sandbox; the sandbox counts the
requests it sees, and verifies every token it issued exactly as a resource would.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.auth.token_cache import TokenCache
from shared.instance import Instance
from shared.settings import load_settings
from tests.auth.conftest import GRAPH, Env
from tests.clock import FakeClock

MODES = [
    "managed-identity",
    "keyvault-certificate",
    "keyvault-signing",
    "federated-managed-identity",
    "client-secret",
]


@pytest.mark.parametrize("mode", MODES)
async def test_each_mode_gets_a_sandbox_token_with_the_consented_roles(env: Env, mode: str) -> None:
    instance = Instance(load_settings(env.settings(mode)))
    token = await instance.token_cache.get_token()
    claims = env.sandbox.issuer.verify(token, [GRAPH])
    assert claims["tid"] == env.seed.home_tenant_id
    assert claims["idtyp"] == "app"
    assert set(claims["roles"]) == set(env.seed.graph_roles)
    if mode == "managed-identity":
        assert claims["appid"] == env.seed.system_identity_client_id
    else:
        assert claims["appid"] == env.seed.client_id


@pytest.mark.parametrize("mode", ["keyvault-certificate", "federated-managed-identity"])
async def test_second_tenant_gets_its_own_token(env: Env, mode: str) -> None:
    instance = Instance(load_settings(env.settings(mode)))
    home = await instance.token_cache.get_token(env.seed.home_tenant_id)
    second = await instance.token_cache.get_token(env.seed.second_tenant_id)
    assert env.sandbox.issuer.verify(second, [GRAPH])["tid"] == env.seed.second_tenant_id
    assert env.sandbox.issuer.verify(home, [GRAPH])["tid"] == env.seed.home_tenant_id


async def test_user_assigned_identity(env: Env) -> None:
    settings = env.settings(
        "managed-identity", DAEMON_MANAGED_IDENTITY_CLIENT_ID=env.seed.user_identity_client_id
    )
    token = await Instance(load_settings(settings)).token_cache.get_token()
    assert env.sandbox.issuer.verify(token, [GRAPH])["appid"] == env.seed.user_identity_client_id


@pytest.mark.parametrize("mode", MODES)
async def test_100_concurrent_cold_callers_make_exactly_one_token_request(
    env: Env, mode: str
) -> None:
    instance = Instance(load_settings(env.settings(mode)))
    before = env.endpoint_hits(mode)
    tokens = await asyncio.gather(*(instance.token_cache.get_token() for _ in range(100)))
    assert len(set(tokens)) == 1
    assert env.endpoint_hits(mode) - before == 1
    assert instance.token_cache.stats.token_requests == 1


async def test_1000_uses_within_the_lifetime_make_one_request(env: Env) -> None:
    instance = Instance(load_settings(env.settings("keyvault-signing")))
    before = env.endpoint_hits("keyvault-signing")
    signs_before = env.state.counter("kv.requests.sign")
    for _ in range(1000):
        await instance.token_cache.get_token()
    assert env.endpoint_hits("keyvault-signing") - before == 1
    assert env.state.counter("kv.requests.sign") - signs_before == 1
    assert instance.token_cache.stats.hits == 999


def _cache_with_clock(instance: Instance, clock: FakeClock) -> TokenCache:
    """A token cache in front of the instance's real credential, on a clock the test moves
    (the credential and the sandbox keep real time)."""
    return TokenCache(
        instance.credential.request_token,
        default_tenant=instance.settings.tenant_id,
        default_scope=instance.settings.api_scope,
        allowed_tenants=instance.settings.allowed_tenants,
        clock=clock,
    )


async def test_early_refresh_happens_once_and_forced_refresh_reaches_endpoint(env: Env) -> None:
    mode = "keyvault-certificate"
    instance = Instance(load_settings(env.settings(mode)))
    clock = FakeClock.following(time.time)  # the sandbox keeps real time
    cache = _cache_with_clock(instance, clock)
    before = env.endpoint_hits(mode)
    first = await cache.get_token()
    clock.advance(3600 - 290)  # inside the last 5 minutes of a one-hour token
    tokens = await asyncio.gather(*(cache.get_token() for _ in range(50)))
    assert env.endpoint_hits(mode) - before == 2
    assert cache.stats.early_refreshes == 1
    refreshed = [t for t in tokens if t != first]
    assert refreshed
    assert await cache.get_token() == refreshed[0]
    forced = await cache.get_token(force_refresh=True)
    assert env.endpoint_hits(mode) - before == 3
    assert forced not in (first, refreshed[0])


async def test_failing_early_refresh_still_serves_the_valid_token(fresh_env: Env) -> None:
    mode = "keyvault-certificate"
    instance = Instance(load_settings(fresh_env.settings(mode)))
    clock = FakeClock.following(time.time)  # the sandbox keeps real time
    cache = _cache_with_clock(instance, clock)
    first = await cache.get_token()
    fresh_env.state.fail_next_token_requests(1, 50000)
    clock.advance(3600 - 200)
    assert await cache.get_token() == first
    assert cache.stats.refresh_failures == 1
    assert fresh_env.state.counter("rejections.AADSTS50000") == 1
    fresh_env.sandbox.issuer.verify(first, [GRAPH])  # still accepted by the resource


async def test_rotation_new_version_and_old_one_removed_from_the_app(fresh_env: Env) -> None:
    env = fresh_env
    instance = Instance(load_settings(env.settings("keyvault-certificate")))
    credential = instance.credential
    first = await instance.token_cache.get_token()
    old = credential.certificate()
    assert old is not None
    new_version = env.state.rotate_certificate(env.seed.certificate_name, register=True)
    env.state.unregister_app_certificate(env.seed.client_id, old.thumbprint_s256)
    token = await instance.token_cache.get_token(force_refresh=True)
    assert token != first
    assert env.state.counter("rejections.AADSTS700027") == 1
    now_using = credential.certificate()
    assert now_using is not None
    assert now_using.version == new_version.version
    assert getattr(credential, "reloads", None) == 1


async def test_a_newer_version_in_key_vault_is_noticed_without_a_rejection(
    fresh_env: Env,
) -> None:
    env = fresh_env
    settings = env.settings("keyvault-signing", DAEMON_CERTIFICATE_CHECK_SECONDS="0.001")
    instance = Instance(load_settings(settings))
    await instance.token_cache.get_token()
    new_version = env.state.rotate_certificate(env.seed.signing_certificate_name, register=True)
    await asyncio.sleep(0.01)
    await instance.token_cache.get_token(force_refresh=True)
    info = instance.credential.certificate()
    assert info is not None
    assert info.version == new_version.version
    assert env.state.counter("rejections.AADSTS700027") == 0


async def test_a_newer_but_disabled_version_does_not_replace_the_working_one(
    fresh_env: Env,
) -> None:
    env = fresh_env
    settings = env.settings("keyvault-certificate", DAEMON_CERTIFICATE_CHECK_SECONDS="0.001")
    instance = Instance(load_settings(settings))
    await instance.token_cache.get_token()
    before = instance.credential.certificate()
    assert before is not None
    newer = env.state.add_certificate_version(
        env.seed.certificate_name, enabled=False, register_with_app=env.seed.client_id
    )
    await asyncio.sleep(0.01)
    token = await instance.token_cache.get_token(force_refresh=True)
    env.sandbox.issuer.verify(token, [GRAPH])
    after = instance.credential.certificate()
    assert after is not None
    assert after.version == before.version != newer.version
