"""Timer triggers: the ``TimerRequest`` a timer function gets, and the loop that fires it on
its schedule (NCRONTAB or an interval, see :mod:`shared.host.schedule`).

``runOnStartup`` runs the function once when the loop starts. A run that starts more than a
minute after it was due is marked ``past_due``, as the timer trigger's ``IsPastDue`` marks a
late invocation
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#usage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from azure.functions.timer import TimerRequest

from shared.host.functions import FunctionSpec
from shared.host.schedule import Schedule, parse_schedule

logger = logging.getLogger(__name__)

__all__ = ["PAST_DUE_AFTER", "TimerLoop", "timer_request", "utc_now", "wait_for_stop"]

PAST_DUE_AFTER = 60.0  # seconds late after which a run is past due

Run = Callable[[str, bool], Awaitable[None]]  # (function name, past_due)
Wait = Callable[[asyncio.Event, float], Awaitable[None]]  # (stop, seconds)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less when ``stop`` is set meanwhile."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def timer_request(*, past_due: bool) -> TimerRequest:
    """The trigger value of a timer function."""
    return TimerRequest(past_due=past_due, schedule={"AdjustForDST": False}, schedule_status={})


class TimerLoop:
    """Fires one timer function on its schedule until stopped.

    ``run(name, past_due)`` runs the function (and handles its failure); ``now`` and
    ``wait`` are the clock and the wait until the next run (tests inject a fake clock).
    """

    def __init__(
        self,
        spec: FunctionSpec,
        run: Run,
        *,
        now: Callable[[], datetime] = utc_now,
        wait: Wait = wait_for_stop,
    ) -> None:
        self.spec = spec
        self.run = run
        self.now = now
        self.wait = wait
        self.schedule: Schedule = parse_schedule(
            str(spec.trigger.properties.get("schedule", "")),
            key=f"function {spec.name} schedule",
        )

    def is_past_due(self, due: datetime) -> bool:
        return (self.now() - due).total_seconds() > PAST_DUE_AFTER

    async def __call__(self, stop: asyncio.Event) -> None:
        name = self.spec.name
        if self.spec.trigger.properties.get("runOnStartup"):
            await self.run(name, False)
        while not stop.is_set():
            now = self.now()
            due = self.schedule.next_after(now)
            logger.info("Timer function %s: next run at %s", name, due.isoformat())
            await self.wait(stop, (due - now).total_seconds())
            if stop.is_set():
                return
            await self.run(name, self.is_past_due(due))
