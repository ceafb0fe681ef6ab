"""Injectable time: a monotonic clock and an async sleep, so tests never really wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["Clock", "Sleep", "monotonic", "real_sleep"]

Clock = Callable[[], float]
"""Returns monotonic seconds."""

Sleep = Callable[[float], Awaitable[None]]
"""Waits the given number of seconds (negative or zero: returns at once)."""


def monotonic() -> float:
    """The default clock: :func:`time.monotonic`."""
    return time.monotonic()


async def real_sleep(seconds: float) -> None:
    """The default sleep: :func:`asyncio.sleep`, never with a negative delay."""
    await asyncio.sleep(max(0.0, seconds))
