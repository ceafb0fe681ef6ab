"""The fleet budget's bucket arithmetic: its shape, a lease's grant, a published pause.

Pure functions over the entity's values (no storage, no clock of their own), so the rules
the fleet obeys read in one place and are tested without a table. The entity's layout is in
:mod:`shared.webapi.fleet_table`; the leasing (slices, prefetch, fallback) in
:mod:`shared.webapi.fleet`.

**Limits.** What an instance holds is dropped ``lease_seconds`` (default 1 s) after its last
lease, and is never more than a slice, so writes spent in any window of T seconds are at
most ``Capacity + Rate × T`` plus a slice per instance. The bucket holds
``capacity_seconds`` of the rate (default 0.5 s): far less than Graph's 150 s window, the
stricter choice, because other clients of the same app may spend Graph's window too and
this bucket cannot see them, and because slices spent late (an instance whose event loop
was busy) bunch up: a small bucket keeps those bursts small. The price is Graph's burst
allowance: with the fleet budget on, the fleet never goes above the sustained rate. Rate =
the configured budget × ``utilization`` (1.0 by default, as the pacer's: Graph refills its
bucket at exactly the documented rate, and what the fleet can spend above it in any window,
the bucket plus a slice per instance, is a small part of Graph's own bucket, so pacing at
the rate keeps Graph's level instead of slowly wasting it; Graph's near-limit reports and
429s slow or pause the fleet: :mod:`shared.webapi.fleet`). A clock running ahead on one
instance moves ``Stamp`` forward: the others refill nothing until they catch up (it can only
slow the fleet, never speed it up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EPSILON",
    "FleetConfig",
    "FleetStats",
    "Lease",
    "bucket_entity",
    "indebted_entity",
    "paused_entity",
    "plan_lease",
    "refilled",
]

EPSILON = 1e-6  # token shortfalls below this are rounding: admit


@dataclass(frozen=True)
class FleetConfig:
    """The shared bucket's shape and the lease policy (see the module docstring)."""

    writes_per_second: float = 20.0
    utilization: float = 1.0
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
    eased: int = 0


@dataclass(frozen=True)
class Lease:
    """What one lease got: ``grant`` writes at ``at``; when none, the bucket is not worth
    asking again before ``next_at``."""

    grant: float
    at: float
    next_at: float
    conflicts: int = 0


def _numbers(entity: Mapping[str, Any], default_stamp: float) -> tuple[float, float]:
    """(Tokens, Stamp) of a stored entity; an unreadable one is an empty bucket."""
    tokens = float(entity.get("Tokens", 0.0))
    stamp = float(entity.get("Stamp", default_stamp))
    if not (math.isfinite(tokens) and math.isfinite(stamp)):
        return 0.0, default_stamp
    return tokens, stamp


def refilled(entity: Mapping[str, Any] | None, now: float, cfg: FleetConfig) -> tuple[float, float]:
    """The bucket's (tokens, stamp) at ``now``: ``Tokens + (now − Stamp) × rate``, capped at
    the capacity. No entity yet: a full bucket. A ``Stamp`` in the future (a pause, or a
    clock ahead on another instance) refills nothing until then."""
    if entity is None:
        return cfg.capacity, now
    tokens, stamp = _numbers(entity, now)
    if now > stamp:
        tokens += (now - stamp) * cfg.rate
        stamp = now
    return min(tokens, cfg.capacity), stamp


def plan_lease(
    tokens: float, stamp: float, now: float, held: float, prefetch: bool, cfg: FleetConfig
) -> Lease:
    """How much to take from a bucket holding ``tokens`` when this instance holds ``held``.

    A slice at most, and a debt (``held`` < 0) is repaid first. A bucket holding less than
    ``min_lease`` (or, for a ``prefetch``, less than a full slice: the instances that have run
    out go first) is left alone: ``grant`` 0 and ``next_at`` when it will hold enough."""
    want = max(0.0, cfg.slice - held)
    least = cfg.slice if prefetch else min(cfg.min_lease, want)
    if want <= 0 or tokens + EPSILON < least:
        next_at = max(now, stamp) + max(least - tokens, 0.0) / cfg.rate
        return Lease(0.0, now, next_at)
    return Lease(min(want, tokens), now, now)


def bucket_entity(
    keys: tuple[str, str], app: str, tenant: str, tokens: float, stamp: float, cfg: FleetConfig
) -> dict[str, Any]:
    """The entity to write back (see :mod:`shared.webapi.fleet_table` for its layout)."""
    partition, row = keys
    return {
        "PartitionKey": partition,
        "RowKey": row,
        "App": app,
        "Tenant": tenant,
        "Tokens": tokens,
        "Stamp": stamp,
        "Rate": cfg.rate,
        "Capacity": cfg.capacity,
    }


def paused_entity(
    found: Mapping[str, Any] | None,
    until: float,
    keys: tuple[str, str],
    app: str,
    tenant: str,
    cfg: FleetConfig,
) -> dict[str, Any] | None:
    """The bucket a full bucket into debt with its refill stamp moved to ``until`` (a 429's
    end), keeping an earlier deeper debt or a later stamp; None when an equal or later pause
    is already there (nothing to write)."""
    if found is None:
        return bucket_entity(keys, app, tenant, -cfg.capacity, until, cfg)
    tokens, stamp = _numbers(found, until)
    if stamp >= until and tokens <= -cfg.capacity:
        return None
    return bucket_entity(keys, app, tenant, min(tokens, -cfg.capacity), max(stamp, until), cfg)


def indebted_entity(
    found: Mapping[str, Any] | None,
    now: float,
    debt: float,
    keys: tuple[str, str],
    app: str,
    tenant: str,
    cfg: FleetConfig,
) -> dict[str, Any]:
    """The bucket refilled to ``now`` less ``debt`` writes: the fleet spends that much less
    than the rate, which the API's own bucket gets back."""
    tokens, stamp = refilled(found, now, cfg)
    return bucket_entity(keys, app, tenant, tokens - debt, stamp, cfg)
