"""The per-instance objects: settings, credential, token cache, API clients, pacers, store,
the jobs queue and the host's queue options.

A function instance is one worker process. Everything here is built lazily on first use —
never at import, so the Functions host indexes the app even when settings are missing — and
kept for the life of the process. This module is the one place that owns these objects. The
storage SDK, the batch engine and the fleet budget are imported where first used, so the
first token and the first API response of a cold instance do not wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from shared.auth.credentials import AppCredential, create_app_credential
from shared.auth.token_cache import TokenCache
from shared.errors import SettingError, StateStoreError
from shared.settings import Settings, load_settings
from shared.webapi.client import ApiClient

if TYPE_CHECKING:  # imported where first used: the first API call need not pay for them
    from azure.core.credentials import TokenCredential

    from shared.storage import JobQueue, StateStore, StorageConnection
    from shared.webapi.engine import BatchEngine
    from shared.webapi.fleet import FleetBudget, TableBudgetStore
    from shared.webapi.pacing import TenantPacer

__all__ = ["CachedTokenSource", "Instance", "current_instance", "reset_current_instance"]

logger = logging.getLogger(__name__)

# The Functions host names the app root (the folder with host.json and function_app.py) in
# this setting: https://learn.microsoft.com/azure/azure-functions/functions-app-settings#azurewebjobsscriptroot
# The worker also runs with that folder as its current directory, which is the fallback.
SCRIPT_ROOT_SETTING = "AzureWebJobsScriptRoot"


def app_host_json(env: Mapping[str, str]) -> Path:
    """host.json of the running app: in ``AzureWebJobsScriptRoot``, else the current
    directory (the Functions app root, where the host starts the worker and Core Tools runs)."""
    root = (env.get(SCRIPT_ROOT_SETTING) or "").strip()
    return (Path(root) if root else Path.cwd()) / "host.json"


class CachedTokenSource:
    """The API client's bearer tokens for one tenant, from the instance's token cache."""

    def __init__(self, cache: TokenCache, tenant: str) -> None:
        self._cache = cache
        self.tenant = tenant
        self._last: str | None = None

    async def __call__(self, *, force_refresh: bool = False) -> str:
        if force_refresh:
            # If another caller already replaced the rejected token, that one is returned
            # without a second request to the token endpoint.
            token = await self._cache.get_token(
                self.tenant, force_refresh=True, rejected_token=self._last
            )
        else:
            token = await self._cache.get_token(self.tenant)
        self._last = token
        return token


class Instance:
    """Everything one function instance keeps for its lifetime (one process, or one test)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: StateStore | None = None,
        storage: StorageConnection | None = None,
        key_vault_credential: TokenCredential | None = None,
        clock: Callable[[], float] = time.time,
        host_json: Path | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._storage = storage
        self._job_queue: JobQueue | None = None
        self._host_json = host_json if host_json is not None else app_host_json(os.environ)
        self._max_dequeue_count: int | None = None
        self._base64: bool = True
        self.clock = clock
        self.credential: AppCredential = create_app_credential(
            settings, key_vault_credential=key_vault_credential, clock=clock
        )
        self.token_cache = TokenCache(
            self.credential.request_token,
            default_tenant=settings.tenant_id,
            default_scope=settings.api_scope,
            allowed_tenants=settings.allowed_tenants,
            clock=clock,
        )

        self._clients: dict[tuple[asyncio.AbstractEventLoop, str], ApiClient] = {}
        self._pacers: dict[tuple[asyncio.AbstractEventLoop, str], TenantPacer] = {}
        self._budget_table: TableBudgetStore | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Instance:
        """From the app settings; the state store only if AzureWebJobsStorage is configured
        (doctor and the CLI work without one)."""
        has_storage = any(k.split("__", 1)[0] == "AzureWebJobsStorage" for k in env)
        settings = load_settings(env)
        host_json = app_host_json(env)
        if not has_storage:
            return cls(settings, host_json=host_json)
        from shared.storage.connection import storage_connection

        # parsed now (a bad connection setting fails here, named); the store opens on first use
        return cls(settings, storage=storage_connection(env), host_json=host_json)

    @property
    def store(self) -> StateStore:
        """Durable state (checkpoints, run records) in Table storage on AzureWebJobsStorage."""
        if self._store is None:
            if self._storage is None:
                raise SettingError(
                    "AzureWebJobsStorage",
                    "is required for jobs (a connection string, UseDevelopmentStorage=true "
                    "with Azurite, or AzureWebJobsStorage__accountName for a managed identity)",
                )
            from shared.storage.store import StateStore

            self._store = StateStore(self._storage.table_service())
        return self._store

    def _queue_options(self) -> None:
        from shared.host.config import load_host_options

        queues = load_host_options(self._host_json).queues
        self._max_dequeue_count = queues.max_dequeue_count
        self._base64 = queues.base64

    @property
    def max_dequeue_count(self) -> int:
        """host.json ``extensions.queues.maxDequeueCount``: the host's last delivery."""
        if self._max_dequeue_count is None:
            self._queue_options()
        assert self._max_dequeue_count is not None
        return self._max_dequeue_count

    def job_queue(self) -> JobQueue:
        """The jobs queue (``DAEMON_JOBS_QUEUE`` on AzureWebJobsStorage), encoded as host.json
        says, for the sweep's fan-out and the hand-over of a message after crashes."""
        if self._job_queue is None:
            if self._storage is None:
                raise SettingError(
                    "AzureWebJobsStorage",
                    "is required for the jobs queue (a connection string, "
                    "UseDevelopmentStorage=true with Azurite, or "
                    "AzureWebJobsStorage__accountName for a managed identity)",
                )
            if self._max_dequeue_count is None:
                self._queue_options()
            from shared.storage.queue import JobQueue

            self._job_queue = JobQueue(self._storage, self.settings.jobs_queue, base64=self._base64)
        return self._job_queue

    def api_client(self, tenant: str | None = None) -> ApiClient:
        """The API client for ``tenant`` on the running event loop (one per loop and tenant).

        An httpx client must not be shared across event loops, so a new loop (a new test, a
        new ``asyncio.run``) gets its own; clients of closed loops are dropped.
        """
        loop = asyncio.get_running_loop()
        tenant = (tenant or self.settings.tenant_id).lower()
        for key in [k for k in self._clients if k[0].is_closed()]:
            del self._clients[key]
        client = self._clients.get((loop, tenant))
        if client is None or client.is_closed:
            # Validates the tenant against the allow-list before anything is built.
            self.token_cache.check_tenant(tenant)
            client = ApiClient(
                self.settings.api_base_url,
                CachedTokenSource(self.token_cache, tenant),
                http2=self.settings.api_http2,
                throttle_priority=self.settings.api_throttle_priority,
            )
            self._clients[(loop, tenant)] = client
        return client

    def batch_engine(self, tenant: str | None = None) -> BatchEngine:
        """A batch engine for ``tenant``; all engines of a tenant on this loop share one pacer
        (the API's budget is per app and tenant)."""
        from shared.webapi.engine import BatchEngine
        from shared.webapi.pacing import PacingConfig, TenantPacer

        client = self.api_client(tenant)
        loop = asyncio.get_running_loop()
        key = (loop, (tenant or self.settings.tenant_id).lower())
        for stale in [k for k in self._pacers if k[0].is_closed()]:
            del self._pacers[stale]
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = TenantPacer(
                PacingConfig(
                    writes_per_second=self.settings.api_writes_per_second,
                    resource_units_per_second=self.settings.api_resource_units_per_second,
                ),
                fleet=self._fleet_budget(key[1]),
            )
        return BatchEngine(
            client, pacer=pacer, replication_seconds=self.settings.replication_retry_seconds
        )

    @property
    def token_requests(self) -> int:
        """Tokens this instance has requested from Entra ID so far (cache misses and
        refreshes): a run's share is the difference before and after it."""
        return self.token_cache.stats.token_requests

    @property
    def fleet_app(self) -> str:
        """The app's key in the fleet budget's table: the budget is per app and tenant."""
        s = self.settings
        return s.client_id or s.managed_identity_client_id or "system-assigned"

    def _fleet_budget(self, tenant: str) -> FleetBudget | None:
        """This tenant's share of the fleet-wide write budget (``DAEMON_FLEET_BUDGET``), or
        None: turned off, or no AzureWebJobsStorage (doctor, the CLI, unit tests)."""
        if not self.settings.fleet_budget or self._storage is None:
            return None
        from shared.webapi.fleet import FleetBudget, FleetConfig, TableBudgetStore

        if self._budget_table is None:
            try:
                self._budget_table = TableBudgetStore.from_connection(self._storage)
            except (StateStoreError, SettingError) as exc:  # no table endpoint: pace alone
                logger.warning("fleet budget off: %s", exc)
                return None
        config = FleetConfig(writes_per_second=self.settings.api_writes_per_second)
        return FleetBudget(self._budget_table, self.fleet_app, tenant, config)

    async def aclose(self) -> None:
        """Close this loop's API clients, fleet leases and the credential."""
        loop = asyncio.get_running_loop()
        for key in [k for k in self._clients if k[0] is loop]:
            await self._clients.pop(key).aclose()
        for key in [k for k in self._pacers if k[0] is loop]:
            fleet = self._pacers.pop(key).fleet
            if fleet is not None:
                await fleet.aclose()
        self.close()

    def close(self) -> None:
        self.credential.close()
        if self._store is not None:
            self._store.close()
        if self._job_queue is not None:
            self._job_queue.close()
        if self._budget_table is not None:
            self._budget_table.close()
            self._budget_table = None


_lock = threading.Lock()
_current: Instance | None = None


def current_instance(env: Mapping[str, str] | None = None) -> Instance:
    """The process-wide instance, built on first use from the app settings."""
    global _current
    with _lock:
        if _current is None:
            _current = Instance.from_env(os.environ if env is None else env)
        return _current


def reset_current_instance() -> None:
    """Forget the process-wide instance (after settings changed; used by the CLI)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = None
