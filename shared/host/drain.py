"""Drain: run a set of queue listeners until their queues are idle, then stop them.

Idle means: nothing received, nothing in flight and (``wait_for_invisible``) no message left
in the queues at all, not even one waiting out its visibilityTimeout, for ``idle_seconds``.
A drain gives up after ``timeout`` seconds (``timed_out`` is then True); work in flight is
always finished first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from shared.host.listener import QueueListener
from shared.host.stats import DrainResult, QueueStats

logger = logging.getLogger(__name__)

__all__ = ["DrainTiming", "drain"]

Count = Callable[[QueueListener], Awaitable[int]]


@dataclass(frozen=True)
class DrainTiming:
    """How long a drain may take and how it decides that the queues are idle."""

    timeout: float = 30.0
    idle_seconds: float = 0.2
    poll_interval: float = 0.05
    wait_for_invisible: bool = True


def _mark(flags: dict[str, bool], name: str, is_idle: bool) -> None:
    flags[name] = is_idle


async def drain(
    queues: tuple[str, ...],
    listeners: Sequence[QueueListener],
    *,
    message_count: Count,
    timing: DrainTiming = DrainTiming(),
    clock: Callable[[], float] = time.monotonic,
) -> DrainResult:
    """Run ``listeners`` until idle (see the module doc); their counts are in the result,
    by function name. ``message_count`` counts a listener's queue, invisible messages too."""
    result = DrainResult(queues=queues)
    stop = asyncio.Event()
    idle = {listener.spec.name: False for listener in listeners}
    tasks = []
    for listener in listeners:
        stats = result.stats[listener.spec.name] = QueueStats()
        mark = functools.partial(_mark, idle, listener.spec.name)
        tasks.append(
            asyncio.create_task(
                listener.listen(stop, stats, idle=mark, poll_interval=timing.poll_interval)
            )
        )
    try:
        result.timed_out = await _until_idle(
            queues, listeners, tasks, idle, message_count, timing, clock
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def _quiet(
    listeners: Sequence[QueueListener], idle: dict[str, bool], count: Count, wait_all: bool
) -> bool:
    if not all(idle.values()):
        return False
    if not wait_all:
        return True
    counts = await asyncio.gather(*(count(listener) for listener in listeners))
    return not any(counts)


async def _until_idle(
    queues: tuple[str, ...],
    listeners: Sequence[QueueListener],
    tasks: Sequence[asyncio.Task[None]],
    idle: dict[str, bool],
    count: Count,
    timing: DrainTiming,
    clock: Callable[[], float],
) -> bool:
    """Wait until the listeners are idle (False) or the timeout passed (True)."""
    deadline = clock() + timing.timeout
    idle_since: float | None = None
    while True:
        now = clock()
        if await _quiet(listeners, idle, count, timing.wait_for_invisible):
            idle_since = idle_since or now
            if now - idle_since >= timing.idle_seconds:
                return False
        else:
            idle_since = None
        if now >= deadline:
            logger.warning(
                "Queues %s were not idle after %ss: stopping", ", ".join(queues), timing.timeout
            )
            return True
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        await asyncio.sleep(timing.poll_interval)
