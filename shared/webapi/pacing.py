"""Per-tenant pacing: a two-dimensional token bucket (writes, resource units) that adapts.

The configured budget (Graph's identity limits, 20 writes/s per app+tenant and 3,500–8,000
RU per 10 s: https://learn.microsoft.com/graph/throttling-limits) is a *ceiling*: other
instances may spend the same budget, so the pacer never assumes it is all ours and learns
the share it actually gets from the API's answers (AIMD):

- it starts at ``utilization`` × budget (1.0 by default: Graph refills its bucket at exactly
  the documented rate, so pacing at it keeps the bucket's level; the API's answers below
  pull it down when someone else spends the same budget) and, unless the API reports room
  (below), never goes above that;
- a 429 multiplies the rate by ``decrease_factor`` (once per round trip: answers to
  requests sent before the last decrease do not decrease it again), empties the buckets and
  pauses the whole tenant until the largest Retry-After has passed;
- ``x-ms-throttle-limit-percentage`` (sent above 80 % of a limit) at or above
  ``hold_percentage`` stops increases, at or above ``slow_percentage`` decreases gently;
- every other answer adds ``increase_step`` × budget back (additive increase).

Acquisition is FIFO (one waiter at a time) and reserves tokens ahead: a cost larger than the
bucket is admitted when the bucket is full and leaves it in debt, so the long-run rate is the
configured one whatever the batch size.

With a ``fleet`` budget (:mod:`shared.webapi.fleet`), writes are also taken from the slice
this instance leased from the bucket all instances share; while that budget is unavailable
(storage slow or down) the pacer paces alone as above, and the adaptation to the API's
answers applies in both cases. A limit at ``slow_percentage`` also gives the API's bucket
room back through the fleet's (:meth:`FleetBudget.near_limit`), and a 429 pauses the fleet.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.webapi.operations import Cost
from shared.webapi.timing import Clock, Sleep, monotonic, real_sleep

if TYPE_CHECKING:
    from shared.webapi.fleet import FleetBudget

__all__ = ["PacingConfig", "TenantPacer"]

logger = logging.getLogger(__name__)

_EPSILON = 1e-6  # token shortfalls below this are rounding: admit (else a float clock stalls)


@dataclass(frozen=True)
class PacingConfig:
    """Budget and adaptation knobs for one tenant."""

    writes_per_second: float = 20.0
    resource_units_per_second: float = 350.0
    utilization: float = 1.0
    burst_seconds: float = 1.0
    decrease_factor: float = 0.7
    increase_step: float = 0.05
    min_fraction: float = 0.01
    hold_percentage: float = 90.0
    slow_percentage: float = 98.0
    slow_factor: float = 0.95
    # Graph reports each request's cost (x-ms-resource-unit) and, above 80 % use of a limit,
    # x-ms-throttle-limit-percentage. While an API that reports its usage says nothing about a
    # limit being near, the budget's bucket has room (it starts full): the rate may climb to
    # ``headroom_utilization`` × the budget. A limit at or above ``hold_percentage`` brings the
    # ceiling back to ``utilization`` for ``headroom_cooldown`` seconds: a few round trips,
    # so answers to requests sent before the slow-down cannot start a new burst, yet short
    # enough that room the bucket gains later (Graph reports nothing below 80 % use) is spent
    # within the run, not a minute after it.
    headroom_utilization: float = 2.0
    headroom_cooldown: float = 5.0

    def __post_init__(self) -> None:
        if self.writes_per_second <= 0 or self.resource_units_per_second <= 0:
            raise ValueError("pacing rates must be positive")
        if not 0 < self.utilization <= 1 or not 0 < self.decrease_factor < 1:
            raise ValueError("utilization must be in (0, 1] and decrease_factor in (0, 1)")
        if not 0 < self.min_fraction <= 1 or self.burst_seconds <= 0:
            raise ValueError("min_fraction must be in (0, 1] and burst_seconds positive")
        if self.headroom_utilization < self.utilization or self.headroom_cooldown < 0:
            raise ValueError("headroom_utilization must be at least utilization")


class _Bucket:
    def __init__(self, budget: float, burst_seconds: float, now: float) -> None:
        self.budget = budget
        self.burst_seconds = burst_seconds
        self.tokens = budget * burst_seconds
        self.stamp = now

    def capacity(self, rate: float) -> float:
        return max(rate * self.burst_seconds, 1.0)

    def refill(self, now: float, rate: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity(rate), self.tokens + (now - self.stamp) * rate)
        self.stamp = max(self.stamp, now)

    def wait_for(self, cost: float, rate: float) -> float:
        need = min(cost, self.capacity(rate)) - self.tokens
        return 0.0 if need <= _EPSILON else need / rate


class TenantPacer:
    """Paces one tenant's requests; share one instance among all engine runs of a tenant."""

    def __init__(
        self,
        config: PacingConfig | None = None,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        fleet: FleetBudget | None = None,
    ) -> None:
        self.config = config or PacingConfig()
        self.fleet = fleet
        self._clock = clock or monotonic
        self._sleep = sleep or real_sleep
        now = self._clock()
        self._fraction = self.config.utilization
        self._writes = _Bucket(self.config.writes_per_second, self.config.burst_seconds, now)
        self._units = _Bucket(self.config.resource_units_per_second, self.config.burst_seconds, now)
        self._writes.tokens *= self._fraction
        self._units.tokens *= self._fraction
        self._paused_until = now
        self._last_decrease = float("-inf")
        self._last_increase = float("-inf")
        self._constrained_until = float("-inf")
        self._lock = asyncio.Lock()
        self.throttle_events = 0
        self.paused_seconds = 0.0

    @property
    def fraction(self) -> float:
        """The current rate as a fraction of the configured budget."""
        return self._fraction

    @property
    def write_rate(self) -> float:
        return self.config.writes_per_second * self._fraction

    @property
    def unit_rate(self) -> float:
        return self.config.resource_units_per_second * self._fraction

    @property
    def paused_until(self) -> float:
        return self._paused_until

    async def acquire(self, cost: Cost) -> float:
        """Wait until ``cost`` fits the budget (and any tenant pause is over); returns the
        time of admission (use it as ``sent_at`` for :meth:`throttled`)."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                w_rate, u_rate = self.write_rate, self.unit_rate
                self._writes.refill(now, w_rate)
                self._units.refill(now, u_rate)
                wait = max(
                    self._writes.wait_for(cost.writes, w_rate) if cost.writes else 0.0,
                    self._units.wait_for(cost.resource_units, u_rate)
                    if cost.resource_units
                    else 0.0,
                )
                if wait <= 0 and cost.writes and self.fleet is not None:
                    # None: the fleet budget is unavailable, pace alone
                    wait = await self.fleet.take(cost.writes) or 0.0
                    if wait > 0:
                        await self._sleep(wait)
                        continue
                    now = self._clock()  # take() may have waited for a lease
                if wait <= 0:
                    self._writes.tokens -= cost.writes
                    self._units.tokens -= cost.resource_units
                    return now
                await self._sleep(wait)

    def throttled(self, retry_after: float, *, sent_at: float | None = None) -> None:
        """A 429 (or several, pass the largest Retry-After) for a request sent at ``sent_at``:
        pause the tenant, empty the buckets and decrease the rate once per round trip."""
        now = self._clock()
        self.throttle_events += 1
        until = now + max(0.0, retry_after)
        if until > self._paused_until:
            self.paused_seconds += until - max(now, self._paused_until)
            self._paused_until = until
        self._writes.tokens = min(self._writes.tokens, 0.0)
        self._units.tokens = min(self._units.tokens, 0.0)
        if self.fleet is not None:
            self.fleet.throttled(retry_after)
        if sent_at is None or sent_at > self._last_decrease:
            old = self._fraction
            self._fraction = max(self.config.min_fraction, old * self.config.decrease_factor)
            self._last_decrease = now
            logger.info(
                "tenant throttled: pausing %.2fs, rate %.1f%% → %.1f%% of budget",
                retry_after,
                old * 100,
                self._fraction * 100,
            )

    def answered(
        self,
        *,
        limit_percentage: float | None = None,
        sent_at: float | None = None,
        reports_usage: bool = False,
    ) -> None:
        """An answer without 429: additive increase, unless the API says a limit is close.

        ``reports_usage``: the answer carried the API's usage report (``x-ms-resource-unit``),
        so the absence of ``x-ms-throttle-limit-percentage`` means the limits have room.
        """
        cfg = self.config
        now = self._clock()
        if limit_percentage is not None and limit_percentage >= cfg.hold_percentage:
            # a limit is near: no more headroom for a while, and back to the budget at once
            self._constrained_until = now + cfg.headroom_cooldown
            self._fraction = min(self._fraction, cfg.utilization)
        if limit_percentage is not None and limit_percentage >= cfg.slow_percentage:
            if self.fleet is not None:  # the fleet's bucket gives the API's some room back
                self.fleet.near_limit()
            if sent_at is None or sent_at > self._last_decrease:
                self._fraction = max(cfg.min_fraction, self._fraction * cfg.slow_factor)
                self._last_decrease = now
                logger.debug(
                    "throttle limit at %.0f%%: rate down to %.1f%% of budget",
                    limit_percentage,
                    self._fraction * 100,
                )
            return
        if limit_percentage is not None and limit_percentage >= cfg.hold_percentage:
            return
        # additive increase once per round trip (not per answer): only answers to requests
        # sent after the last change count
        if sent_at is not None and sent_at <= max(self._last_increase, self._last_decrease):
            return
        headroom = reports_usage and now >= self._constrained_until
        ceiling = cfg.headroom_utilization if headroom else cfg.utilization
        self._fraction = min(ceiling, self._fraction + cfg.increase_step)
        self._last_increase = now
