from __future__ import annotations

import pytest

from shared.webapi.operations import Cost
from shared.webapi.pacing import PacingConfig, TenantPacer
from tests.clock import FakeClock


def _pacer(time: FakeClock, **kwargs: float) -> TenantPacer:
    return TenantPacer(PacingConfig(**kwargs), clock=time.clock, sleep=time.sleep)


async def test_steady_rate_matches_the_budget_share() -> None:
    time = FakeClock()
    pacer = _pacer(time, writes_per_second=20.0, utilization=0.95)
    start = time.now
    for _ in range(100):  # 100 batches of 20 writes = 2,000 writes
        await pacer.acquire(Cost(writes=20, resource_units=20))
    elapsed = time.now - start
    rate = 2000 / elapsed
    assert 0.9 * 20 <= rate <= 20.0  # ≥ 90 % of the budget, never above it


async def test_resource_units_also_limit() -> None:
    time = FakeClock()
    pacer = _pacer(time, resource_units_per_second=10.0, utilization=1.0)
    start = time.now
    for _ in range(50):
        await pacer.acquire(Cost(writes=0, resource_units=2))
    assert time.now - start == pytest.approx(9.0, abs=0.5)  # 100 RU at 10/s, minus the burst


async def test_throttle_pauses_and_decreases_once_per_round_trip() -> None:
    time = FakeClock()
    pacer = _pacer(time, writes_per_second=20.0, utilization=1.0)
    sent = await pacer.acquire(Cost(1, 1))
    pacer.throttled(3.5, sent_at=sent)
    pacer.throttled(1.0, sent_at=sent)  # same round trip: no second decrease
    assert pacer.fraction == pytest.approx(0.7)
    assert pacer.paused_until == pytest.approx(time.now + 3.5)
    before = time.now
    await pacer.acquire(Cost(1, 1))
    assert time.now - before >= 3.5  # nobody goes before the largest Retry-After
    later = await pacer.acquire(Cost(1, 1))
    pacer.throttled(0.0, sent_at=later)  # a request sent after the decrease: decrease again
    assert pacer.fraction == pytest.approx(0.49)


async def test_additive_increase_up_to_the_ceiling_only() -> None:
    time = FakeClock()
    pacer = _pacer(time, utilization=0.9, increase_step=0.05)
    pacer.throttled(0.0)
    assert pacer.fraction == pytest.approx(0.63)
    for _ in range(3):
        pacer.answered()
    assert pacer.fraction == pytest.approx(0.78)
    for _ in range(20):
        pacer.answered()
    assert pacer.fraction == pytest.approx(0.9)  # never above the configured share


async def test_limit_percentage_holds_then_slows() -> None:
    time = FakeClock()
    pacer = _pacer(time, utilization=1.0)
    pacer.throttled(0.0)
    f = pacer.fraction
    pacer.answered(limit_percentage=92.0)
    assert pacer.fraction == f  # close to a limit: no increase
    pacer.answered(limit_percentage=99.0)
    assert pacer.fraction == pytest.approx(f * 0.95)


async def test_rate_never_below_the_floor() -> None:
    pacer = _pacer(FakeClock(), min_fraction=0.1)
    for _ in range(50):
        pacer.throttled(0.0)
    assert pacer.fraction == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"writes_per_second": 0.0}, "rates must be positive"),
        ({"utilization": 1.5}, "utilization"),
        ({"decrease_factor": 1.0}, "decrease_factor"),
        ({"min_fraction": 0.0}, "min_fraction"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PacingConfig(**kwargs)


async def test_increase_once_per_round_trip() -> None:
    time = FakeClock()
    pacer = _pacer(time, utilization=0.9, increase_step=0.05)
    sent = await pacer.acquire(Cost(1, 1))
    pacer.throttled(0.0, sent_at=sent)
    assert pacer.fraction == pytest.approx(0.63)
    time.now += 0.1
    before_answers = await pacer.acquire(Cost(1, 1))
    # many answers to requests sent in the same round trip: one increase
    time.now += 0.1
    for _ in range(10):
        pacer.answered(sent_at=before_answers)
    assert pacer.fraction == pytest.approx(0.68)
    time.now += 0.1
    after = await pacer.acquire(Cost(1, 1))
    pacer.answered(sent_at=after)
    assert pacer.fraction == pytest.approx(0.73)


def test_graph_limit_percentage_header_is_a_fraction() -> None:
    import httpx

    from shared.webapi.engine.rules import limit_percentage as _limit_percentage

    assert _limit_percentage(httpx.Headers({"x-ms-throttle-limit-percentage": "0.92"})) == (
        pytest.approx(92.0)
    )
    assert _limit_percentage(httpx.Headers({"x-ms-throttle-limit-percentage": "x"})) is None
    assert _limit_percentage(httpx.Headers()) is None


async def test_headroom_while_the_api_reports_usage_and_no_limit_is_near() -> None:
    time = FakeClock()
    pacer = _pacer(
        time, utilization=0.9, increase_step=0.5, headroom_utilization=2.0, headroom_cooldown=60.0
    )
    for _ in range(4):
        time.now += 0.1
        pacer.answered(reports_usage=False)
    assert pacer.fraction == pytest.approx(0.9)  # an API that reports nothing: the budget
    for _ in range(4):
        time.now += 0.1
        pacer.answered(reports_usage=True)
    assert pacer.fraction == pytest.approx(2.0)  # Graph says nothing about limits: room
    pacer.answered(reports_usage=True, limit_percentage=92.0)  # a limit is near
    assert pacer.fraction == pytest.approx(0.9)  # back to the budget at once
    time.now += 0.1
    pacer.answered(reports_usage=True)  # below the hold line again, but within the cooldown
    assert pacer.fraction == pytest.approx(0.9)
    time.now += 61
    pacer.answered(reports_usage=True)
    assert pacer.fraction == pytest.approx(1.4)


def test_headroom_cannot_be_below_utilization() -> None:
    with pytest.raises(ValueError, match="headroom_utilization"):
        PacingConfig(utilization=0.9, headroom_utilization=0.5)


async def test_by_default_the_pacer_runs_at_the_whole_budget() -> None:
    # Graph refills its bucket at exactly the documented rate: pacing at it keeps the
    # bucket's level (a margin below it would leave budget unspent for the whole run)
    time = FakeClock()
    pacer = _pacer(time, writes_per_second=20.0)
    assert pacer.fraction == pytest.approx(1.0)
    start = time.now
    for _ in range(100):  # the first batch from the local bucket, then one per second
        await pacer.acquire(Cost(writes=20, resource_units=20))
    assert time.now - start == pytest.approx(99.0, abs=0.01)


async def test_headroom_returns_a_few_seconds_after_a_limit_was_near() -> None:
    # the room Graph keeps below the hold line is spent again once it stops reporting a limit
    # near, not a minute later (a whole short run)
    time = FakeClock()
    pacer = _pacer(time, increase_step=0.5)
    time.now += 0.1
    pacer.answered(reports_usage=True)
    assert pacer.fraction == pytest.approx(1.5)
    pacer.answered(reports_usage=True, limit_percentage=90.0)
    assert pacer.fraction == pytest.approx(1.0)
    time.now += 1.0
    pacer.answered(reports_usage=True)
    assert pacer.fraction == pytest.approx(1.0)  # within the cooldown: the budget
    time.now += 6.0
    pacer.answered(reports_usage=True)
    assert pacer.fraction == pytest.approx(1.5)
