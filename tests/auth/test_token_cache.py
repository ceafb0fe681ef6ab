"""Token cache logic with an injected fetch function and clock (no I/O).

The end-to-end versions of these tests, counting requests at the sandbox's token endpoint,
are in test_tokens_e2e.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from azure.core.credentials import AccessTokenInfo

from shared.auth.token_cache import TokenCache, refresh_time
from shared.errors import ConfigurationError, TenantNotAllowedError, TokenRequestError
from tests.clock import FakeClock

HOME = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
SCOPE = "https://graph.microsoft.com/.default"


START = 1_000_000.0


class Fetcher:
    """Counts calls; issues tokens valid for ``lifetime`` on the fake clock."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600, delay: float = 0.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.delay = delay
        self.calls: list[tuple[str, str]] = []
        self.fail = False
        self.refresh_in: float | None = None
        self._lock = threading.Lock()

    def __call__(self, tenant: str, scope: str) -> AccessTokenInfo:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.calls.append((tenant, scope))
            n = len(self.calls)
        if self.fail:
            raise TokenRequestError("token endpoint down", (50000,))
        refresh_on = int(self.clock.now + self.refresh_in) if self.refresh_in else None
        return AccessTokenInfo(
            f"token-{n}", int(self.clock.now + self.lifetime), refresh_on=refresh_on
        )


def make(clock: FakeClock, fetcher: Fetcher) -> TokenCache:
    return TokenCache(
        fetcher,
        default_tenant=HOME,
        default_scope=SCOPE,
        allowed_tenants=(HOME, OTHER),
        clock=clock,
    )


def test_refresh_time_rules() -> None:
    # refresh_on from the token endpoint wins
    assert refresh_time(0, 3600, 1800) == 1800
    # under 2 hours: 5 minutes before expiry
    assert refresh_time(0, 3600, None) == 3300
    # 2 hours or more: half-life
    assert refresh_time(0, 7200, None) == 3600
    assert refresh_time(0, 86400, None) == 43200
    # very short tokens: half-life rather than "already stale"
    assert refresh_time(0, 120, None) == 60


async def test_concurrent_cold_callers_make_one_request() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock, delay=0.05)
    cache = make(clock, fetcher)
    tokens = await asyncio.gather(*(cache.get_token() for _ in range(100)))
    assert set(tokens) == {"token-1"}
    assert len(fetcher.calls) == 1
    assert cache.stats.token_requests == 1
    assert cache.stats.misses == 100


async def test_keys_are_tenant_and_scope() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock)
    cache = make(clock, fetcher)
    await cache.get_token(HOME)
    await cache.get_token(OTHER)
    await cache.get_token(HOME, "api://other/.default")
    await cache.get_token(HOME.upper())
    assert sorted(fetcher.calls) == sorted(
        [(HOME, SCOPE), (OTHER, SCOPE), (HOME, "api://other/.default")]
    )


async def test_hits_within_lifetime_then_one_early_refresh() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock, lifetime=3600)
    cache = make(clock, fetcher)
    for _ in range(1000):
        assert await cache.get_token() == "token-1"
        clock.now += 3.0  # 1000 uses over 3000 s: all before the refresh point (3300 s)
    assert len(fetcher.calls) == 1
    assert cache.stats.hits == 999
    clock.now += 301  # now past expiry - 5 min, still valid
    results = await asyncio.gather(*(cache.get_token() for _ in range(20)))
    assert len(fetcher.calls) == 2
    assert "token-2" in results
    assert cache.stats.early_refreshes == 1
    assert await cache.get_token() == "token-2"


async def test_refresh_on_is_honoured() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock, lifetime=86400)
    fetcher.refresh_in = 600
    cache = make(clock, fetcher)
    await cache.get_token()
    clock.now += 599
    await cache.get_token()
    assert len(fetcher.calls) == 1
    clock.now += 2
    assert await cache.get_token() == "token-2"


async def test_failed_early_refresh_keeps_serving_valid_token() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock, lifetime=3600)
    cache = make(clock, fetcher)
    await cache.get_token()
    clock.now += 3400  # inside the refresh window
    fetcher.fail = True
    assert await cache.get_token() == "token-1"
    assert cache.stats.refresh_failures == 1
    # it does not hammer the endpoint: the next attempt waits a little
    assert await cache.get_token() == "token-1"
    assert len(fetcher.calls) == 2
    clock.now += 31
    fetcher.fail = False
    assert await cache.get_token() == "token-3"


async def test_expired_token_and_failing_endpoint_raise() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock, lifetime=3600)
    cache = make(clock, fetcher)
    await cache.get_token()
    clock.now += 3600
    fetcher.fail = True
    with pytest.raises(TokenRequestError, match="token endpoint down"):
        await cache.get_token()


async def test_forced_refresh_reaches_the_endpoint_once_for_concurrent_401s() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock, delay=0.02)
    cache = make(clock, fetcher)
    first = await cache.get_token()
    results = await asyncio.gather(
        *(cache.get_token(force_refresh=True, rejected_token=first) for _ in range(10))
    )
    assert set(results) == {"token-2"}
    assert len(fetcher.calls) == 2
    # a straggler holding the old token gets the new one without another request
    assert await cache.get_token(force_refresh=True, rejected_token=first) == "token-2"
    assert len(fetcher.calls) == 2
    # without rejected_token, force always reaches the endpoint
    assert await cache.get_token(force_refresh=True) == "token-3"
    assert cache.stats.forced_refreshes == 2


async def test_tenant_outside_allow_list_is_refused_before_any_request() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock)
    cache = make(clock, fetcher)
    with pytest.raises(TenantNotAllowedError) as caught:
        await cache.get_token("33333333-3333-3333-3333-333333333333")
    assert "33333333-3333-3333-3333-333333333333" in str(caught.value)
    assert "DAEMON_ALLOWED_TENANTS" in str(caught.value)
    with pytest.raises(ConfigurationError, match="static"):
        await cache.get_token(scope="https://graph.microsoft.com/User.Read.All")
    assert fetcher.calls == []


async def test_a_cache_survives_event_loop_changes() -> None:
    clock = FakeClock(START)
    fetcher = Fetcher(clock)
    cache = make(clock, fetcher)
    await cache.get_token()

    def other_loop() -> str:
        return asyncio.run(cache.get_token())

    assert await asyncio.to_thread(other_loop) == "token-1"
    assert len(fetcher.calls) == 1
