"""The fleet budget with an in-memory table and virtual time: several instances leasing from
one bucket stay within it, conflicts are retried, storage failures fall back to pacing alone
and the shared budget resumes when storage is back."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.webapi.fleet import FleetBudget, FleetConfig, FleetConflictError
from shared.webapi.operations import Cost
from shared.webapi.pacing import PacingConfig, TenantPacer
from tests.clock import FakeClock

RATE = 20.0


class MemoryTable:
    """A BudgetTable in memory with ETags, an outage switch and injected conflicts."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.down = False
        self.conflicts_to_inject = 0
        self.writes = 0
        self.calls = 0
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise ServiceRequestError("connection refused (test outage)")

    def read(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            self._check()
            found = self.rows.get((partition, row))
            return (dict(found[0]), found[1]) if found else None

    def create(self, entity: Mapping[str, Any]) -> str:
        with self._lock:
            self._check()
            key = (entity["PartitionKey"], entity["RowKey"])
            if key in self.rows:
                raise FleetConflictError("exists")
            return self._store(key, entity)

    def update(self, entity: Mapping[str, Any], etag: str) -> str:
        with self._lock:
            self._check()
            key = (entity["PartitionKey"], entity["RowKey"])
            if self.conflicts_to_inject:
                # another instance wrote in between: the stored ETag moves on
                self.conflicts_to_inject -= 1
                stored, _ = self.rows[key]
                self.rows[key] = (stored, f"W/{next(self._etags)}")
                raise FleetConflictError("etag mismatch")
            if key not in self.rows or self.rows[key][1] != etag:
                raise FleetConflictError("etag mismatch")
            return self._store(key, entity)

    def _store(self, key: tuple[str, str], entity: Mapping[str, Any]) -> str:
        etag = f"W/{next(self._etags)}"
        self.rows[key] = (dict(entity), etag)
        self.writes += 1
        return etag


def _budget(table: MemoryTable, time: FakeClock, **kwargs: Any) -> FleetBudget:
    config = FleetConfig(writes_per_second=RATE, **kwargs)
    return FleetBudget(table, "app-1", "Tenant-A", config, clock=time.clock, threaded=False)


async def _instances_spend(n: int, seconds: float) -> tuple[list[tuple[float, int]], FleetConfig]:
    """``n`` instances, each a pacer far above the budget alone (4×), sending batches of up
    to 5 writes for ``seconds`` of virtual time; returns (time, writes) of every admission."""
    time = FakeClock()
    table = MemoryTable()
    admitted: list[tuple[float, int]] = []
    budgets = [_budget(table, time) for _ in range(n)]
    end = time.now + seconds

    async def instance(budget: FleetBudget, size: int) -> None:
        pacer = TenantPacer(
            PacingConfig(writes_per_second=4 * RATE, utilization=1.0),
            clock=time.clock,
            sleep=time.sleep,
            fleet=budget,
        )
        while time.now < end:
            at = await pacer.acquire(Cost(writes=size, resource_units=1))
            if at < end:
                admitted.append((at, size))

    await asyncio.gather(*(instance(b, 1 + i % 5) for i, b in enumerate(budgets)))
    for budget in budgets:
        assert budget.active
        assert budget.stats.failures == 0
    return admitted, budgets[0].config


def _max_in_window(admitted: list[tuple[float, int]], window: float) -> int:
    admitted = sorted(admitted)
    best, total, j = 0, 0, 0
    for at, size in admitted:
        total += size
        while admitted[j][0] <= at - window:
            total -= admitted[j][1]
            j += 1
        best = max(best, total)
    return best


@pytest.mark.parametrize("instances", [1, 2, 4])
async def test_instances_leasing_together_never_exceed_the_budget(instances: int) -> None:
    seconds = 30.0
    admitted, config = await _instances_spend(instances, seconds)
    total = sum(size for _, size in admitted)
    # over the run: at most the full bucket plus the refill (plus one batch of debt)
    assert total <= config.capacity + config.rate * seconds + 5
    # over any 5 s window (and any 1 s one): at most a full bucket, the refill, and a slice
    # held by each instance (plus one batch of debt)
    for window in (5.0, 1.0):
        bound = config.capacity + config.rate * window + instances * (config.slice + 5)
        assert _max_in_window(admitted, window) <= bound
    # and the fleet gets most of it (slices lost to expiry are the only waste)
    assert total >= 0.9 * config.rate * seconds


async def test_four_instances_share_fairly() -> None:
    time = FakeClock()
    table = MemoryTable()
    budgets = [_budget(table, time) for _ in range(4)]
    spent = [0] * 4
    end = time.now + 20.0

    async def instance(i: int) -> None:
        pacer = TenantPacer(
            PacingConfig(writes_per_second=4 * RATE, utilization=1.0),
            clock=time.clock,
            sleep=time.sleep,
            fleet=budgets[i],
        )
        while time.now < end:
            await pacer.acquire(Cost(writes=2, resource_units=1))
            spent[i] += 2

    await asyncio.gather(*(instance(i) for i in range(4)))
    assert min(spent) >= 0.6 * max(spent)  # each gets its share; none hoards


async def test_a_lease_is_one_conditional_write_and_a_slice_serves_many_requests() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(
        table,
        time,
        slice_seconds=1.0,
        capacity_seconds=2.0,
        lease_seconds=2.0,
        utilization=0.95,  # the slice arithmetic below
    )
    for _ in range(10):
        assert await budget.take(1) == 0.0
    await budget.settled()
    # 19 writes per slice (1 s at 0.95 × 20): ten takes need one lease, and a prefetch
    # started when less than half of it was left (9) tops it up to a slice again
    assert budget.stats.leases == 2
    assert table.writes == 2
    assert budget.allowance == pytest.approx(budget.config.slice)
    row = next(iter(table.rows.values()))[0]
    assert row["Tokens"] == pytest.approx(budget.config.capacity - budget.config.slice - 10)
    assert row["PartitionKey"] == "app-1"
    assert row["RowKey"] == "tenant-a"


async def test_etag_conflicts_are_retried() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time)
    assert await budget.take(1) == 0.0
    await budget.settled()
    table.conflicts_to_inject = 3
    for _ in range(40):
        assert await budget.take(1) in (0.0, pytest.approx(0.0))
        time.now += 0.05
        await budget.settled()
    assert budget.stats.conflicts == 3
    assert budget.active


async def test_too_many_conflicts_fall_back_then_retry() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time, max_conflicts=2, retry_seconds=10.0)
    table.rows[("app-1", "tenant-a")] = ({"Tokens": 10.0, "Stamp": time.now}, "W/0")
    table.conflicts_to_inject = 2
    assert await budget.take(1) is None  # fallback: the caller paces alone
    assert not budget.active
    assert budget.stats.failures == 1
    time.now += 10.0
    assert await budget.take(1) == 0.0
    assert budget.active
    assert budget.stats.recoveries == 1


async def test_storage_down_falls_back_and_the_work_continues_then_resumes() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time, retry_seconds=5.0)
    pacer = TenantPacer(
        PacingConfig(writes_per_second=RATE, utilization=0.95),
        clock=time.clock,
        sleep=time.sleep,
        fleet=budget,
    )
    for _ in range(20):
        await pacer.acquire(Cost(writes=1, resource_units=1))
    await budget.settled()
    leases = budget.stats.leases
    assert leases >= 1
    assert budget.active

    table.down = True
    time.now += 10.0  # the held slice expires
    start = time.now
    for _ in range(200):  # 10 s of work at the budget: admitted by pacing alone
        await pacer.acquire(Cost(writes=1, resource_units=1))
    assert not budget.active
    assert budget.stats.fallback_takes > 0
    # storage is retried every retry_seconds, not per request
    assert budget.stats.failures <= 1 + (time.now - start) / 5.0 + 1
    # pacing alone keeps to this instance's rate (after its local bucket of 1 s)
    assert (200 - 0.95 * RATE) / (time.now - start) <= RATE

    table.down = False
    time.now += 5.0
    for _ in range(40):
        await pacer.acquire(Cost(writes=1, resource_units=1))
    await budget.settled()
    assert budget.active
    assert budget.stats.recoveries == 1
    assert budget.stats.leases > leases


async def test_empty_bucket_makes_the_caller_wait_without_asking_storage_each_time() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time)
    table.rows[("app-1", "tenant-a")] = ({"Tokens": 0.0, "Stamp": time.now}, "W/0")
    wait = await budget.take(1)
    assert wait is not None
    assert wait == pytest.approx(budget.config.min_lease / budget.config.rate)
    calls = table.calls
    assert await budget.take(1) == pytest.approx(wait)  # no second read before then
    assert table.calls == calls
    time.now += wait
    assert await budget.take(1) == 0.0


async def test_a_clock_ahead_on_another_instance_only_slows_the_fleet() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time)
    # another instance, 30 s ahead, emptied the bucket
    table.rows[("app-1", "tenant-a")] = ({"Tokens": 0.0, "Stamp": time.now + 30.0}, "W/0")
    wait = await budget.take(1)
    assert wait is not None
    assert wait > 0
    assert budget.stats.leases == 0


async def test_unused_slices_expire() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time, prefetch_fraction=0.0)
    assert await budget.take(1) == 0.0
    assert budget.allowance == pytest.approx(budget.config.slice - 1)
    time.now += budget.config.lease_seconds
    assert budget.allowance == 0.0
    assert await budget.take(1) == 0.0
    assert budget.stats.expired_writes == pytest.approx(budget.config.slice - 1)


def test_bad_configuration_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="slice_seconds"):
        FleetConfig(slice_seconds=0)
    with pytest.raises(ValueError, match="lease_seconds"):
        FleetConfig(slice_seconds=2.0, capacity_seconds=2.0, lease_seconds=1.0)
    with pytest.raises(ValueError, match="writes_per_second"):
        FleetConfig(writes_per_second=float("nan"))
    with pytest.raises(ValueError, match="app and a tenant"):
        FleetBudget(MemoryTable(), "", "t")


async def test_a_429_pauses_the_whole_fleet_until_its_retry_after() -> None:
    time = FakeClock()
    table = MemoryTable()
    first, second = _budget(table, time), _budget(table, time)
    assert await first.take(1) == 0.0
    assert await second.take(1) == 0.0
    first.throttled(3.0)
    await first.settled()
    assert first.stats.pauses == 1
    assert first.allowance <= 0  # its slice is dropped
    first.throttled(2.0)  # an earlier end than the one published: no second write
    await first.settled()
    assert first.stats.pauses == 1
    row = next(iter(table.rows.values()))[0]
    assert row["Tokens"] == pytest.approx(-first.config.capacity)  # a bucket of debt
    assert row["Stamp"] == pytest.approx(time.now + 3.0)
    # the other instance spends what it holds, then cannot lease before the pause ends
    while second.allowance >= 1:
        assert await second.take(1) == 0.0
    await second.settled()
    wait = await second.take(1)
    assert wait is not None
    assert wait >= 3.0 + second.config.capacity_seconds  # the Retry-After, then the debt
    time.now += wait
    assert await second.take(1) == 0.0


async def test_a_pacer_throttled_with_a_fleet_tells_the_fleet() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time)
    pacer = TenantPacer(PacingConfig(), clock=time.clock, sleep=time.sleep, fleet=budget)
    sent = await pacer.acquire(Cost(writes=1, resource_units=1))
    pacer.throttled(1.5, sent_at=sent)
    await budget.settled()
    assert budget.stats.pauses == 1
    before = time.now
    await pacer.acquire(Cost(writes=1, resource_units=1))
    assert time.now - before >= 1.5


async def test_a_limit_nearly_spent_gives_the_api_room_back_once_per_lease_period() -> None:
    time = FakeClock()
    table = MemoryTable()
    budget = _budget(table, time)
    pacer = TenantPacer(PacingConfig(), clock=time.clock, sleep=time.sleep, fleet=budget)
    await pacer.acquire(Cost(writes=1, resource_units=1))
    await budget.settled()
    before = next(iter(table.rows.values()))[0]["Tokens"]
    pacer.answered(limit_percentage=100.0, reports_usage=True)
    await budget.settled()
    assert budget.stats.eased == 1
    row = next(iter(table.rows.values()))[0]
    assert row["Tokens"] == pytest.approx(before - budget.config.min_lease)  # no time passed
    pacer.answered(limit_percentage=100.0, reports_usage=True)  # the same lease period
    await budget.settled()
    assert budget.stats.eased == 1
    pacer.answered(limit_percentage=90.0, reports_usage=True)  # near, not nearly spent
    time.now += budget.config.lease_seconds
    pacer.answered(limit_percentage=92.0, reports_usage=True)
    await budget.settled()
    assert budget.stats.eased == 1
    pacer.answered(limit_percentage=100.0, reports_usage=True)
    await budget.settled()
    assert budget.stats.eased == 2
