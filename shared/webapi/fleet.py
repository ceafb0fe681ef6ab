"""A write budget shared by every instance of the app: a token bucket per (app, tenant) in
Table storage, leased in slices.

Graph's write limit is per app and tenant (20 writes/s, 3,000 per 150 s:
https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits),
however many Functions instances run; Flex Consumption scales a queue function out on its own
(https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#scaling). An
instance pacing as if alone overshoots N-fold with N instances and leans on 429s. So the
instances share one bucket in Table storage on ``AzureWebJobsStorage``.

**Entity layout.** Table ``<prefix>budget`` (default ``daemonbudget``), one entity per
(app, tenant): PartitionKey = the app (client id, or the managed identity's), RowKey = the
tenant (lower case), both sanitized like the state store's keys. Properties: ``Tokens``
(writes left in the bucket, a double), ``Stamp`` (wall-clock seconds of the last refill),
``Rate`` and ``Capacity`` (what the writer configured; informational: every instance refills
with its own settings, so instances with different settings cannot widen each other's).

**Leases.** An instance never asks storage per request. It reads the entity, refills it
(``Tokens + (now − Stamp) × Rate``, capped at ``Capacity``), takes a *slice* (at most
``slice_seconds`` of the rate, default 0.25 s, and never more than the bucket holds; a bucket
holding less than half a slice is left alone and asked again when it has refilled that
much, so a busy fleet makes a few storage writes per second, not one per request) and
writes the rest back with one conditional update (``If-Match: <ETag>``: optimistic
concurrency, https://learn.microsoft.com/rest/api/storageservices/update-entity2). A
conflict (412: another instance leased in between) re-reads and retries, up to
``max_conflicts`` times. The slice is spent locally by the pacer; when less than
``prefetch_fraction`` of a slice is left, the next lease is fetched in the background, so a
batch waits for storage only when the fleet's budget really is spent.

**Limits.** What an instance holds is dropped ``lease_seconds`` (default 1 s) after its last
lease, and is never more than a slice, so writes spent in any window of T seconds are at
most ``Capacity + Rate × T`` plus a slice per instance. The bucket holds ``capacity_seconds`` of the
rate (default 0.5 s): far less than Graph's 150 s window, the stricter choice, because
other clients of the same app may spend Graph's window too and this bucket cannot see
them, and because slices spent late (an instance whose event loop was busy) bunch up: a
small bucket keeps those bursts small. The price is Graph's burst allowance: with the
fleet budget on, the fleet never goes above the sustained rate. Rate = the configured
budget × ``utilization`` (0.95, as the pacer's). A clock running ahead on one instance
moves ``Stamp`` forward: the others refill nothing until they catch up (it can only slow
the fleet, never speed it up).

**Fairness.** Slices are capped and an instance leases again only when its slice is nearly
spent; a prefetch (the instance still holds writes) takes only from a bucket holding a full
slice, so when the bucket is contended the instances that ran out go first. No instance can
hoard: with N busy instances each gets about 1/N of the rate; an idle instance takes
nothing.

**Graph's feedback.** A 429 means the fleet overshot (or another client of the app spent
the budget). The instance that got it drops its slice and publishes a pause: the bucket is
put a full bucket into debt and its ``Stamp`` moved to the end of the Retry-After, so no
instance leases before then, nor for ``capacity_seconds`` after (instances that kept sending
during the Retry-After would only be refused and delay the recovery:
https://learn.microsoft.com/graph/throttling#best-practices-to-handle-throttling; and each
instance's adaptive rate is far above its share of the fleet's, so it would take several
429s to slow the fleet down on its own).

**Failure behaviour.** A lease that fails (storage error, a call slower than
``timeout_seconds``, ``max_conflicts`` conflicts in a row) puts the budget in *fallback* for
``retry_seconds`` (default 5 s): :meth:`FleetBudget.take` answers None and the pacer paces
alone with its adaptive rate (AIMD on 429s), so work never stops for storage. After
``retry_seconds`` the next take tries a lease again; once one succeeds the fleet budget is
back. Graph's own answers (429, ``x-ms-throttle-limit-percentage``) still steer each
instance's pacer in both modes. Resource units are not shared (writes are what a fleet of
this daemon runs out of); each instance keeps pacing them alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.errors import FleetConflictError, StateStoreError
from shared.storage import StorageConnection, sanitize_key

__all__ = [
    "BudgetTable",
    "FleetBudget",
    "FleetConfig",
    "FleetConflictError",
    "FleetStats",
    "TableBudgetStore",
]

logger = logging.getLogger(__name__)

_EPSILON = 1e-6


class BudgetTable(Protocol):
    """Where the bucket entities live (synchronous; called in a worker thread)."""

    def read(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        """The entity and its ETag, or None when there is none."""

    def create(self, entity: Mapping[str, Any]) -> str:
        """Insert; :class:`FleetConflictError` when it exists. Returns the new ETag."""

    def update(self, entity: Mapping[str, Any], etag: str) -> str:
        """Replace if the ETag still matches, else :class:`FleetConflictError`."""


class TableBudgetStore:
    """:class:`BudgetTable` on azure-data-tables, with short timeouts and few SDK retries
    (a lease that is slow is worth less than pacing alone for a while)."""

    def __init__(self, table: TableClient, service: TableServiceClient | None = None) -> None:
        self._table = table
        self._service = service
        self._created = False
        self._lock = threading.Lock()

    @classmethod
    def from_connection(
        cls,
        connection: StorageConnection,
        *,
        table_name: str = "daemonbudget",
        timeout_seconds: float = 2.0,
    ) -> TableBudgetStore:
        endpoint = connection.table_endpoint
        if endpoint is None:
            raise StateStoreError(
                f"{connection.setting} gives no table endpoint for the fleet budget"
            )
        kwargs: dict[str, Any] = {
            "retry_total": 0,  # no SDK retries: a failed lease falls back, retried later
            "connection_timeout": timeout_seconds,
            "read_timeout": timeout_seconds,
        }
        service = TableServiceClient(endpoint=endpoint, credential=connection.credential, **kwargs)
        return cls(service.get_table_client(table_name), service)

    def _ensure(self) -> None:
        with self._lock:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    self._table.create_table()
                self._created = True

    def read(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        self._ensure()
        try:
            entity = self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return dict(entity), str(entity.metadata.get("etag"))

    def create(self, entity: Mapping[str, Any]) -> str:
        self._ensure()
        try:
            result = self._table.create_entity(dict(entity))
        except ResourceExistsError:
            raise FleetConflictError("the budget entity was created by another instance") from None
        return str(result.get("etag"))

    def update(self, entity: Mapping[str, Any], etag: str) -> str:
        try:
            result = self._table.update_entity(
                dict(entity),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise FleetConflictError("the budget entity changed since it was read") from None
        return str(result.get("etag"))

    def close(self) -> None:
        self._table.close()
        if self._service is not None:
            self._service.close()


@dataclass(frozen=True)
class FleetConfig:
    """The shared bucket's shape and the lease policy (see the module docstring)."""

    writes_per_second: float = 20.0
    utilization: float = 0.95
    capacity_seconds: float = 0.5
    slice_seconds: float = 0.25
    lease_seconds: float = 1.0
    prefetch_fraction: float = 0.5
    min_lease_fraction: float = 0.5
    max_conflicts: int = 8
    timeout_seconds: float = 2.0
    retry_seconds: float = 5.0

    def __post_init__(self) -> None:
        checks = {
            "writes_per_second": self.writes_per_second > 0,
            "utilization": 0 < self.utilization <= 1,
            "capacity_seconds": self.capacity_seconds >= self.slice_seconds > 0,
            "slice_seconds": self.slice_seconds > 0,
            "lease_seconds": self.lease_seconds >= self.slice_seconds,
            "prefetch_fraction": 0 <= self.prefetch_fraction < 1,
            "min_lease_fraction": 0 < self.min_lease_fraction <= 1,
            "max_conflicts": self.max_conflicts >= 1,
            "timeout_seconds": self.timeout_seconds > 0,
            "retry_seconds": self.retry_seconds >= 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(
                    f"FleetConfig.{name}={value!r} is out of range (need positive rates, "
                    "slice_seconds <= capacity_seconds and <= lease_seconds, "
                    "0 <= prefetch_fraction < 1)"
                )

    @property
    def rate(self) -> float:
        return self.writes_per_second * self.utilization

    @property
    def capacity(self) -> float:
        return self.rate * self.capacity_seconds

    @property
    def slice(self) -> float:
        return max(1.0, self.rate * self.slice_seconds)

    @property
    def min_lease(self) -> float:
        """Fewer writes than this are not worth a write to storage (unless that is all
        that is wanted): an empty bucket is asked again when it holds this many."""
        return max(1.0, self.slice * self.min_lease_fraction)


@dataclass
class FleetStats:
    """Counters of one instance's leases (for benchmarks, tests and logs)."""

    leases: int = 0
    leased_writes: float = 0.0
    spent_writes: float = 0.0
    expired_writes: float = 0.0
    conflicts: int = 0
    failures: int = 0
    empty: int = 0
    fallback_takes: int = 0
    recoveries: int = 0
    pauses: int = 0


@dataclass(frozen=True)
class _Lease:
    grant: float
    at: float
    next_at: float
    conflicts: int


class FleetBudget:
    """One instance's view of the fleet's bucket for one (app, tenant).

    ``clock`` is wall-clock seconds (stamps are compared across machines). Use one per
    event loop (its prefetch runs as a task). ``threaded=False`` calls the table on the
    event loop's thread, for an in-memory table in tests.
    """

    def __init__(
        self,
        table: BudgetTable,
        app: str,
        tenant: str,
        config: FleetConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        threaded: bool = True,
    ) -> None:
        if not app or not tenant:
            raise ValueError("FleetBudget needs an app and a tenant")
        self.table = table
        self.app = app
        self.tenant = tenant.lower()
        self.config = config or FleetConfig()
        self._clock = clock
        self._threaded = threaded
        self._keys = (sanitize_key(app), sanitize_key(self.tenant))
        self._allowance = 0.0
        self._expires = float("-inf")
        self._retry_at = float("-inf")
        self._fallback = False
        self._next_at = float("-inf")  # the bucket was empty: not worth asking before this
        self._prefetch_at = float("-inf")  # the bucket was contended: no prefetch before this
        self._lease_task: asyncio.Task[None] | None = None
        self._pause_task: asyncio.Task[None] | None = None
        self._published_until = float("-inf")
        self.stats = FleetStats()

    @property
    def active(self) -> bool:
        """False while in fallback (storage failed; pacing alone until ``retry_seconds``)."""
        return not self._fallback

    @property
    def allowance(self) -> float:
        """Writes leased and not yet spent: 0 once the lease expired, negative while a cost
        larger than a slice is being repaid (debt never expires)."""
        if self._allowance > 0 and self._clock() >= self._expires:
            return 0.0
        return self._allowance

    async def take(self, writes: float) -> float | None:
        """Spend ``writes`` from the leased slice.

        Returns 0.0 when spent; seconds to wait before asking again when the fleet's bucket
        is empty; None when the fleet budget is unavailable (pace alone). A cost larger
        than a slice is admitted with a full slice and leaves the allowance in debt, so the
        long-run rate holds whatever the batch size.
        """
        now = self._clock()
        if self._fallback and now < self._retry_at:
            self.stats.fallback_takes += 1
            return None
        self._expire(now)
        need = min(writes, self.config.slice)
        if self._allowance + _EPSILON < need:
            if now < self._next_at and not self._fallback:
                return self._next_at - now
            await self._lease_now()
            now = self._clock()
            if self._fallback:
                self.stats.fallback_takes += 1
                return None
            if self._allowance + _EPSILON < need:
                return max(self._next_at - now, _EPSILON)
        self._allowance -= writes
        self.stats.spent_writes += writes
        if self._allowance < self.config.slice * self.config.prefetch_fraction:
            self._prefetch()
        return 0.0

    def _expire(self, now: float) -> None:
        if now >= self._expires and self._allowance > 0:
            self.stats.expired_writes += self._allowance
            self._allowance = 0.0

    def _prefetch(self) -> None:
        if self._lease_task is not None and not self._lease_task.done():
            return
        if self._clock() < max(self._next_at, self._prefetch_at):
            return
        self._lease_task = asyncio.get_running_loop().create_task(
            self._lease_guarded(prefetch=True)
        )

    async def _lease_now(self) -> None:
        task = self._lease_task
        if task is not None and not task.done():
            await asyncio.shield(task)
            return
        self._lease_task = asyncio.get_running_loop().create_task(self._lease_guarded())
        await asyncio.shield(self._lease_task)

    async def _lease_guarded(self, *, prefetch: bool = False) -> None:
        """One lease; never raises: a failure switches to fallback until retry_seconds."""
        cfg = self.config
        held = self.allowance
        try:
            if self._threaded:
                result = await asyncio.wait_for(
                    asyncio.to_thread(self._lease, held, prefetch), timeout=cfg.timeout_seconds
                )
            else:  # an in-memory table (tests): no thread, no real time
                result = self._lease(held, prefetch)
        except FleetConflictError:
            self.stats.conflicts += cfg.max_conflicts
            self._fail(f"{cfg.max_conflicts} conflicting leases in a row")
            return
        except (asyncio.TimeoutError, TimeoutError):
            self._fail(f"no answer within {cfg.timeout_seconds:g}s")
            return
        except (AzureError, StateStoreError, OSError) as exc:
            self._fail(type(exc).__name__)
            return
        except Exception as exc:  # a bad entity or a bug must not stop the work either
            logger.exception("fleet budget lease failed unexpectedly")
            self._fail(type(exc).__name__)
            return
        # applied here, on the event loop's thread (take() spends on this thread too)
        self.stats.conflicts += result.conflicts
        if result.grant > 0:
            if not self.stats.leases:
                logger.info(
                    "fleet budget for tenant %s: sharing %.1f writes/s with the app's other "
                    "instances, in slices of up to %.0f",
                    self.tenant,
                    cfg.rate,
                    cfg.slice,
                )
            self._expire(self._clock())
            self._allowance += result.grant
            self._expires = result.at + cfg.lease_seconds
            self._next_at = self._prefetch_at = float("-inf")
            self.stats.leases += 1
            self.stats.leased_writes += result.grant
        elif prefetch:
            self._prefetch_at = result.next_at
        else:
            self._next_at = result.next_at
            self.stats.empty += 1
        if self._fallback:
            self._fallback = False
            self.stats.recoveries += 1
            logger.info(
                "fleet budget for tenant %s is back: pacing to the shared budget", self.tenant
            )

    def _fail(self, reason: str) -> None:
        self.stats.failures += 1
        self._retry_at = self._clock() + self.config.retry_seconds
        if not self._fallback:
            logger.warning(
                "fleet budget for tenant %s unavailable (%s): pacing alone, retrying in %.0fs",
                self.tenant,
                reason,
                self.config.retry_seconds,
            )
        self._fallback = True

    def _lease(self, held: float, prefetch: bool = False) -> _Lease:
        """Read, refill, take a slice, write back if unchanged (runs in a worker thread;
        touches no state of this object but the table). A ``prefetch`` (this instance
        still holds writes) takes only from a bucket holding a full slice: when the bucket is
        contended, the instances that have run out go first (fairness)."""
        cfg = self.config
        partition, row = self._keys
        conflicts = 0
        for _ in range(cfg.max_conflicts):
            now = self._clock()
            found = self.table.read(partition, row)
            if found is None:
                tokens, stamp, etag = cfg.capacity, now, None
            else:
                entity, etag = found
                tokens = float(entity.get("Tokens", 0.0))
                stamp = float(entity.get("Stamp", now))
                if not (math.isfinite(tokens) and math.isfinite(stamp)):
                    tokens, stamp = 0.0, now
                if now > stamp:
                    tokens += (now - stamp) * cfg.rate
                    stamp = now
                tokens = min(tokens, cfg.capacity)
            want = max(0.0, cfg.slice - held)  # a debt is repaid first
            grant = min(want, tokens)
            least = cfg.slice if prefetch else min(cfg.min_lease, want)
            if want <= 0 or tokens + _EPSILON < least:
                # the fleet's bucket is (nearly) empty, or we hold enough: nothing is written
                next_at = max(now, stamp) + max(least - tokens, 0.0) / cfg.rate
                return _Lease(0.0, now, next_at, conflicts)
            entity_out = {
                "PartitionKey": partition,
                "RowKey": row,
                "App": self.app,
                "Tenant": self.tenant,
                "Tokens": tokens - grant,
                "Stamp": stamp,
                "Rate": cfg.rate,
                "Capacity": cfg.capacity,
            }
            try:
                if etag is None:
                    self.table.create(entity_out)
                else:
                    self.table.update(entity_out, etag)
            except FleetConflictError:
                conflicts += 1
                if self._threaded:
                    # others lease at the same moment: a short random pause spreads them
                    time.sleep(random.uniform(0.0, 0.005 * conflicts))
                continue
            return _Lease(grant, now, now, conflicts)
        raise FleetConflictError(f"{conflicts} conflicting leases in a row")

    def throttled(self, retry_after: float) -> None:
        """The API answered 429 with ``retry_after``: the fleet has overshot (or someone
        else spent the budget). Drop what this instance holds, and tell the other instances:
        the shared bucket is emptied and refills only after the Retry-After (one background
        write, none while an equal or later pause was already published)."""
        now = self._clock()
        until = now + max(0.0, retry_after)
        self._allowance = min(self._allowance, 0.0)
        self._next_at = max(self._next_at, until)
        if self._fallback or until <= self._published_until:
            return
        if self._pause_task is not None and not self._pause_task.done():
            return
        self._published_until = until
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: the local pause is all we can do
            return
        self._pause_task = loop.create_task(self._pause_guarded(until))

    async def _pause_guarded(self, until: float) -> None:
        try:
            if self._threaded:
                await asyncio.wait_for(
                    asyncio.to_thread(self._pause, until), timeout=self.config.timeout_seconds
                )
            else:
                self._pause(until)
            self.stats.pauses += 1
        except Exception as exc:  # advisory: each instance's pacer pauses on its own anyway
            logger.debug("fleet budget pause not published: %s", type(exc).__name__)

    def _pause(self, until: float) -> None:
        """Put the shared bucket a full bucket into debt and move its refill stamp to
        ``until`` (worker thread)."""
        cfg = self.config
        partition, row = self._keys
        for _ in range(cfg.max_conflicts):
            found = self.table.read(partition, row)
            entity: dict[str, Any] = {
                "PartitionKey": partition,
                "RowKey": row,
                "App": self.app,
                "Tenant": self.tenant,
                "Tokens": -cfg.capacity,
                "Stamp": until,
                "Rate": cfg.rate,
                "Capacity": cfg.capacity,
            }
            try:
                if found is None:
                    self.table.create(entity)
                    return
                old, etag = found
                stamp = float(old.get("Stamp", until))
                tokens = float(old.get("Tokens", 0.0))
                if not (math.isfinite(tokens) and math.isfinite(stamp)):
                    tokens, stamp = 0.0, until
                if stamp >= until and tokens <= -cfg.capacity:
                    return  # an equal or later pause is already there
                entity["Tokens"] = min(tokens, -cfg.capacity)
                entity["Stamp"] = max(stamp, until)
                self.table.update(entity, etag)
                return
            except FleetConflictError:
                continue

    async def settled(self) -> None:
        """Wait for a lease or pause in flight to end; they never raise."""
        for task in (self._lease_task, self._pause_task):
            if task is not None and not task.done():
                await asyncio.shield(task)

    async def aclose(self) -> None:
        for task in (self._lease_task, self._pause_task):
            await self._cancel(task)

    @staticmethod
    async def _cancel(task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
