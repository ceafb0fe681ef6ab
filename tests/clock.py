"""The one fake clock of the test suite: time that moves only when a test (or a sleeper) says.

Code under test takes its clock and its sleep as arguments (``clock=``, ``sleep=``), so no
test waits through a real timeout:

- ``FakeClock()`` is a callable returning the current fake time; ``advance(seconds)`` moves it.
- ``await clock.sleep(seconds)`` is a virtual sleep: sleepers wake in deadline order, and the
  clock jumps to each deadline once the other runnable tasks have had their turn. Every
  requested wait is recorded in ``sleeps``.
- ``FakeClock.following(time.time)`` is real time plus an offset that ``advance`` moves
  forward: for end-to-end tests where a server (the sandbox) keeps real time and the test
  needs the daemon's view of time to jump ahead (a token about to expire).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

__all__ = ["FakeClock"]

_YIELDS_BEFORE_JUMP = 20  # let runnable tasks reach their next sleep before time jumps


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._base: Callable[[], float] | None = None
        self._now = start
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._driver: asyncio.Task[None] | None = None

    @classmethod
    def following(cls, base: Callable[[], float]) -> FakeClock:
        """``base()`` plus an offset that only :meth:`advance` changes (starts at 0)."""
        clock = cls(start=0.0)
        clock._base = base
        return clock

    @property
    def now(self) -> float:
        return self._now + (self._base() if self._base is not None else 0.0)

    @now.setter
    def now(self, value: float) -> None:
        self._now = value - (self._base() if self._base is not None else 0.0)

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        """The same as calling the clock (for code that takes a bound ``clock`` method)."""
        return self.now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (self.now + max(0.0, seconds), self._seq, future))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await future

    async def _drive(self) -> None:
        while self._waiters:
            for _ in range(_YIELDS_BEFORE_JUMP):
                await asyncio.sleep(0)
            deadline, _, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)
