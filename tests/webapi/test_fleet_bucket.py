"""The fleet budget's bucket arithmetic, without a table: refill, a lease's grant, a pause."""

from __future__ import annotations

import math

import pytest

from shared.webapi.fleet_bucket import (
    FleetConfig,
    bucket_entity,
    paused_entity,
    plan_lease,
    refilled,
)

KEYS = ("app-1", "tenant-a")
CFG = FleetConfig(writes_per_second=20.0)  # rate 20/s, capacity 10, slice 5, min lease 2.5


def test_the_fleet_paces_at_the_whole_budget_by_default() -> None:
    assert CFG.rate == pytest.approx(20.0)
    assert (CFG.capacity, CFG.slice, CFG.min_lease) == pytest.approx((10.0, 5.0, 2.5))


def test_refill_from_nothing_a_stamp_ahead_and_a_bad_entity() -> None:
    assert refilled(None, 100.0, CFG) == (CFG.capacity, 100.0)  # no entity: a full bucket
    assert refilled({"Tokens": 1.0, "Stamp": 99.9}, 100.0, CFG) == pytest.approx((3.0, 100.0))
    assert refilled({"Tokens": 1.0, "Stamp": 50.0}, 100.0, CFG) == (CFG.capacity, 100.0)
    # a pause (or a clock ahead): nothing refills before the stamp
    assert refilled({"Tokens": -10.0, "Stamp": 103.0}, 100.0, CFG) == (-10.0, 103.0)
    assert refilled({"Tokens": math.nan, "Stamp": 1.0}, 100.0, CFG) == (0.0, 100.0)


def test_a_lease_takes_a_slice_at_most_and_repays_a_debt_first() -> None:
    assert plan_lease(10.0, 100.0, 100.0, 0.0, False, CFG).grant == pytest.approx(5.0)
    assert plan_lease(10.0, 100.0, 100.0, 4.0, False, CFG).grant == pytest.approx(1.0)
    assert plan_lease(10.0, 100.0, 100.0, -3.0, False, CFG).grant == pytest.approx(8.0)
    assert plan_lease(10.0, 100.0, 100.0, 5.0, False, CFG).grant == 0.0  # holds enough


def test_a_nearly_empty_bucket_is_left_alone_until_it_refilled() -> None:
    lease = plan_lease(1.0, 100.0, 100.0, 0.0, False, CFG)
    assert lease.grant == 0.0
    assert lease.next_at == pytest.approx(100.0 + 1.5 / 20.0)  # when it holds a min lease
    # a prefetch (the instance still holds writes) waits for a full slice: those who ran
    # out go first
    prefetch = plan_lease(4.0, 100.0, 100.0, 1.0, True, CFG)
    assert prefetch.grant == 0.0
    assert prefetch.next_at == pytest.approx(100.0 + 1.0 / 20.0)
    assert plan_lease(4.0, 100.0, 100.0, 1.0, False, CFG).grant == pytest.approx(4.0)


def test_a_pause_puts_the_bucket_in_debt_until_the_retry_after() -> None:
    fresh = paused_entity(None, 105.0, KEYS, "app", "t", CFG)
    assert fresh is not None
    assert (fresh["Tokens"], fresh["Stamp"]) == (-CFG.capacity, 105.0)
    old = bucket_entity(KEYS, "app", "t", 7.0, 100.0, CFG)
    paused = paused_entity(old, 105.0, KEYS, "app", "t", CFG)
    assert paused is not None
    assert (paused["Tokens"], paused["Stamp"]) == (-CFG.capacity, 105.0)
    deeper = bucket_entity(KEYS, "app", "t", -25.0, 101.0, CFG)
    kept = paused_entity(deeper, 105.0, KEYS, "app", "t", CFG)
    assert kept is not None
    assert (kept["Tokens"], kept["Stamp"]) == (-25.0, 105.0)
    later = bucket_entity(KEYS, "app", "t", -CFG.capacity, 110.0, CFG)
    assert paused_entity(later, 105.0, KEYS, "app", "t", CFG) is None  # nothing to write
