"""One token cache per function instance: refresh ahead, single-flight, counted.

Keyed by (tenant, scope). A token is refreshed at its ``refresh_on`` if the token endpoint
gave one, else 5 minutes before expiry, or at half its life for tokens of 2 hours or more.
However many invocations ask at once, one token request per key is in flight (single-flight).
A failed *early* refresh keeps serving the still-valid token; a *forced* refresh (after the
API answered 401) always reaches the token endpoint. The credential's synchronous SDK calls
run in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from azure.core.credentials import AccessTokenInfo

from shared import telemetry
from shared.errors import ConfigurationError, TenantNotAllowedError

__all__ = ["CacheStats", "TokenCache", "TokenFetch", "refresh_time"]

logger = logging.getLogger(__name__)

TokenFetch = Callable[[str, str], AccessTokenInfo]
"""Synchronous ``(tenant, scope) -> token`` that always reaches the token endpoint."""

REFRESH_MARGIN = 300.0  # refresh 5 minutes before expiry
HALF_LIFE_THRESHOLD = 7200.0  # tokens of 2 h or more refresh at half-life
EXPIRY_SKEW = 30.0  # a token this close to expiry is treated as expired
RETRY_FAILED_REFRESH = 30.0  # after a failed early refresh, wait this long before retrying


@dataclass
class CacheStats:
    """Counters readable for logs and benchmarks."""

    hits: int = 0  # served from the cache
    misses: int = 0  # a caller had to wait for a token request
    token_requests: int = 0  # requests that reached the credential
    early_refreshes: int = 0  # requests made ahead of expiry
    forced_refreshes: int = 0  # requests made because the API rejected a token
    refresh_failures: int = 0  # early refreshes that failed (old token kept)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Entry:
    token: str
    expires_on: float
    refresh_at: float
    fetched_at: float


def refresh_time(fetched_at: float, expires_on: float, refresh_on: float | None) -> float:
    """When a token fetched at ``fetched_at`` should be refreshed."""
    if refresh_on:
        return min(refresh_on, expires_on - EXPIRY_SKEW)
    lifetime = expires_on - fetched_at
    if lifetime >= HALF_LIFE_THRESHOLD:
        return fetched_at + lifetime / 2
    if lifetime > 2 * REFRESH_MARGIN:
        return expires_on - REFRESH_MARGIN
    return fetched_at + lifetime / 2


class TokenCache:
    """Per-instance cache of app-only tokens in front of one credential."""

    def __init__(
        self,
        fetch: TokenFetch,
        *,
        default_tenant: str,
        default_scope: str,
        allowed_tenants: tuple[str, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self.default_tenant = default_tenant
        self.default_scope = default_scope
        self.allowed_tenants = allowed_tenants
        self._allowed = {t.lower() for t in allowed_tenants}
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._inflight: dict[
            tuple[str, str], tuple[asyncio.AbstractEventLoop, asyncio.Task[_Entry]]
        ] = {}
        self._retry_refresh_at: dict[tuple[str, str], float] = {}
        self.stats = CacheStats()

    def __repr__(self) -> str:
        return f"TokenCache(keys={len(self._entries)}, stats={self.stats.as_dict()})"

    def _key(self, tenant: str | None, scope: str | None) -> tuple[str, str]:
        tenant = (tenant or self.default_tenant).lower()
        scope = scope or self.default_scope
        if tenant not in self._allowed:
            raise TenantNotAllowedError(tenant, self.allowed_tenants)
        if not scope.endswith("/.default") or " " in scope:
            raise ConfigurationError(
                f"scope {scope!r} is not a static '<resource>/.default' scope; daemons request "
                "only the permissions granted at app registration"
            )
        return tenant, scope

    def check_tenant(self, tenant: str) -> str:
        """Refuse a tenant outside the allow-list (before any request); return it normalised."""
        return self._key(tenant, None)[0]

    async def get_token(
        self,
        tenant: str | None = None,
        scope: str | None = None,
        *,
        force_refresh: bool = False,
        rejected_token: str | None = None,
    ) -> str:
        """A valid access token for (tenant, scope).

        ``force_refresh`` goes to the token endpoint even if the cached token looks valid
        (the API answered 401). If ``rejected_token`` is given and the cache already holds a
        different, valid token — another caller refreshed meanwhile — that one is returned.
        """
        key = self._key(tenant, scope)
        now = self._clock()
        entry = self._entries.get(key)
        valid = entry is not None and now < entry.expires_on - EXPIRY_SKEW

        if force_refresh:
            if valid and entry is not None and rejected_token and entry.token != rejected_token:
                self.stats.hits += 1
                return entry.token
            self._entries.pop(key, None)
            self.stats.misses += 1
            return (await self._single_flight(key, forced=True)).token

        if entry is not None and valid:
            if now < entry.refresh_at or now < self._retry_refresh_at.get(key, 0.0):
                self.stats.hits += 1
                return entry.token
            if self._current_inflight(key) is not None:
                # someone is refreshing: keep serving the still-valid token meanwhile
                self.stats.hits += 1
                return entry.token
            try:
                return (await self._single_flight(key, early=True)).token
            except Exception as exc:  # the old token is still valid: keep serving it
                self.stats.refresh_failures += 1
                self._retry_refresh_at[key] = now + RETRY_FAILED_REFRESH
                logger.warning(
                    "Early token refresh for tenant %s failed; the current token stays in use "
                    "until %s: %s",
                    key[0],
                    time.strftime("%H:%M:%S", time.gmtime(entry.expires_on)),
                    exc,
                )
                self.stats.hits += 1
                return entry.token

        self.stats.misses += 1
        return (await self._single_flight(key)).token

    def _current_inflight(self, key: tuple[str, str]) -> asyncio.Task[_Entry] | None:
        found = self._inflight.get(key)
        if found is None:
            return None
        loop, task = found
        if loop is not asyncio.get_running_loop() or task.done():
            return None
        return task

    async def _single_flight(
        self, key: tuple[str, str], *, early: bool = False, forced: bool = False
    ) -> _Entry:
        task = self._current_inflight(key)
        if task is None:
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._request(key, early=early, forced=forced))
            self._inflight[key] = (loop, task)
        return await asyncio.shield(task)

    async def _request(self, key: tuple[str, str], *, early: bool, forced: bool) -> _Entry:
        tenant, scope = key
        self.stats.token_requests += 1
        if early:
            self.stats.early_refreshes += 1
        if forced:
            self.stats.forced_refreshes += 1
        telemetry.add("daemon.token_requests", attributes={"tenant": tenant})
        try:
            with telemetry.span("daemon.token", tenant=tenant, early=early, forced=forced):
                info = await asyncio.to_thread(self._fetch, tenant, scope)
        finally:
            self._inflight.pop(key, None)
        fetched_at = self._clock()
        entry = _Entry(
            token=info.token,
            expires_on=float(info.expires_on),
            refresh_at=refresh_time(fetched_at, float(info.expires_on), info.refresh_on),
            fetched_at=fetched_at,
        )
        self._entries[key] = entry
        self._retry_refresh_at.pop(key, None)
        logger.info(
            "Got a token for tenant %s scope %s (expires in %.0f s, refresh in %.0f s)",
            tenant,
            scope,
            entry.expires_on - fetched_at,
            entry.refresh_at - fetched_at,
        )
        return entry
