"""A write budget shared by every instance of the app: a token bucket per (app, tenant) in
Table storage, leased in slices.

Graph's write limit is per app and tenant (20 writes/s, 3,000 per 150 s:
https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits),
however many Functions instances run; Flex Consumption scales a queue function out on its own
(https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#scaling). An
instance pacing as if alone overshoots N-fold with N instances and leans on 429s. So the
instances share one bucket in Table storage on ``AzureWebJobsStorage``
(:mod:`shared.webapi.fleet_table`; the bucket arithmetic in :mod:`shared.webapi.fleet_bucket`).

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

**Limits** (what the fleet can spend in a window, and why the bucket is small): see
:mod:`shared.webapi.fleet_bucket`.

**Fairness.** Slices are capped and an instance leases again only when its slice is nearly
spent; a prefetch (the instance still holds writes) takes only from a bucket holding a full
slice, so when the bucket is contended the instances that ran out go first. No instance can
hoard: with N busy instances each gets about 1/N of the rate; an idle instance takes
nothing.

**Graph's feedback.** ``x-ms-throttle-limit-percentage`` at the pacer's slow line means
Graph's bucket holds less than the fleet may spend in a burst: the instance that sees it
puts half a slice of debt into the shared bucket (at most once per ``lease_seconds``), so
the fleet gives Graph some room back before a 429 does. A 429 means the fleet overshot (or
another client of the app spent the budget). The instance that got it drops its slice and
publishes a pause: the bucket is put a full bucket into debt and its ``Stamp`` moved to the
end of the Retry-After, so no instance leases before then, nor for ``capacity_seconds``
after (instances that kept sending during the Retry-After would only be refused and delay
the recovery: https://learn.microsoft.com/graph/throttling#best-practices-to-handle-throttling;
and each instance's adaptive rate is far above its share of the fleet's, so it would take
several 429s to slow the fleet down on its own).

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
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import AzureError

from shared.errors import FleetConflictError, StateStoreError
from shared.storage import sanitize_key
from shared.webapi.fleet_bucket import (
    EPSILON,
    FleetConfig,
    FleetStats,
    Lease,
    bucket_entity,
    indebted_entity,
    paused_entity,
    plan_lease,
    refilled,
)
from shared.webapi.fleet_table import BudgetTable, TableBudgetStore

__all__ = [
    "BudgetTable",
    "FleetBudget",
    "FleetConfig",
    "FleetConflictError",
    "FleetStats",
    "TableBudgetStore",
]

logger = logging.getLogger(__name__)


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
        self._eased_until = float("-inf")
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
        if self._allowance + EPSILON < need:
            if now < self._next_at and not self._fallback:
                return self._next_at - now
            await self._lease_now()
            now = self._clock()
            if self._fallback:
                self.stats.fallback_takes += 1
                return None
            if self._allowance + EPSILON < need:
                return max(self._next_at - now, EPSILON)
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

    def _lease(self, held: float, prefetch: bool = False) -> Lease:
        """Read, refill, take a slice, write back if unchanged (runs in a worker thread;
        touches no state of this object but the table). A ``prefetch`` (this instance
        still holds writes) takes only from a bucket holding a full slice: when the bucket is
        contended, the instances that have run out go first (fairness)."""
        cfg = self.config
        conflicts = 0
        for _ in range(cfg.max_conflicts):
            now = self._clock()
            found = self.table.read(*self._keys)
            tokens, stamp = refilled(None if found is None else found[0], now, cfg)
            lease = plan_lease(tokens, stamp, now, held, prefetch, cfg)
            if lease.grant <= 0:
                # the fleet's bucket is (nearly) empty, or we hold enough: nothing is written
                return Lease(0.0, now, lease.next_at, conflicts)
            entity = bucket_entity(
                self._keys, self.app, self.tenant, tokens - lease.grant, stamp, cfg
            )
            try:
                if found is None:
                    self.table.create(entity)
                else:
                    self.table.update(entity, found[1])
            except FleetConflictError:
                conflicts += 1
                if self._threaded:
                    # others lease at the same moment: a short random pause spreads them
                    time.sleep(random.uniform(0.0, 0.005 * conflicts))
                continue
            return Lease(lease.grant, now, now, conflicts)
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

    def near_limit(self) -> None:
        """The API reports a limit nearly spent (the pacer's ``slow_percentage``): its
        bucket holds less than the fleet may spend in a burst (the shared bucket plus a
        slice per instance). Give it some back before a 429 does: half a slice of debt in
        the shared bucket, one background write at most every ``lease_seconds`` per
        instance, so the fleet runs below the rate until the API's level has recovered."""
        now = self._clock()
        if self._fallback or now < self._eased_until:
            return
        if self._pause_task is not None and not self._pause_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._eased_until = now + self.config.lease_seconds
        debt = self.config.min_lease
        self._pause_task = loop.create_task(
            self._publish(
                lambda found: indebted_entity(
                    found, self._clock(), debt, self._keys, self.app, self.tenant, self.config
                ),
                "eased",
            )
        )

    async def _pause_guarded(self, until: float) -> None:
        def paused(found: Mapping[str, Any] | None) -> dict[str, Any] | None:
            return paused_entity(found, until, self._keys, self.app, self.tenant, self.config)

        await self._publish(paused, "pauses")

    async def _publish(
        self, make: Callable[[Mapping[str, Any] | None], dict[str, Any] | None], counter: str
    ) -> None:
        """Write what ``make`` makes of the stored entity (a pause, a debt); advisory: a
        failure is logged at debug level, each instance's pacer adapts on its own anyway."""
        try:
            if self._threaded:
                await asyncio.wait_for(
                    asyncio.to_thread(self._write, make), timeout=self.config.timeout_seconds
                )
            else:
                self._write(make)
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        except Exception as exc:
            logger.debug("fleet budget %s not published: %s", counter, type(exc).__name__)

    def _write(self, make: Callable[[Mapping[str, Any] | None], dict[str, Any] | None]) -> None:
        """Read the entity, write ``make(entity)`` if unchanged (None: nothing to write),
        again on a conflict (worker thread)."""
        for _ in range(self.config.max_conflicts):
            found = self.table.read(*self._keys)
            entity = make(None if found is None else found[0])
            if entity is None:
                return
            try:
                if found is None:
                    self.table.create(entity)
                else:
                    self.table.update(entity, found[1])
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
