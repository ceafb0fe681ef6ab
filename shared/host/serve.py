"""Serve: run the runner's long-lived tasks (queue listeners, timer loops) until stopped.

Stop comes from an event or from SIGTERM/SIGINT (the signal a service manager or the
platform sends before it kills the process). On stop nothing new is received or started;
messages in flight finish first. A task that fails stops the others and its error is
raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["Worker", "run_until_stopped", "signal_handlers"]

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # runs until the event is set


def _on_signal(signum: signal.Signals, stop: asyncio.Event) -> None:
    logger.info("Received %s: finishing work in flight, then stopping", signum.name)
    stop.set()


@contextlib.contextmanager
def signal_handlers(stop: asyncio.Event, *, install: bool = True) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while inside (where the loop supports handlers)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if install:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, _on_signal, signum, stop)
                installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def run_until_stopped(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    """Run every worker until ``stop`` is set or one of them fails (then re-raise)."""
    tasks = [asyncio.create_task(worker(stop)) for worker in workers]
    try:
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                stop.set()
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
