"""What the queue listeners did: counts per function, and the outcome of a drain."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DrainResult", "QueueStats"]

_SUMMED = ("received", "invocations", "succeeded", "failed", "poisoned")


@dataclass
class QueueStats:
    """What a queue listener did (counts, for tests and the drain summary)."""

    received: int = 0
    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0
    max_in_flight: int = 0

    def add(self, other: QueueStats) -> None:
        """Add ``other``'s counts to these (the highest ``max_in_flight`` wins)."""
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_in_flight = max(self.max_in_flight, other.max_in_flight)


@dataclass
class DrainResult:
    """The outcome of :meth:`~shared.host.FunctionsHost.run_queue_until_idle`."""

    queues: tuple[str, ...]
    stats: dict[str, QueueStats] = field(default_factory=dict)
    timed_out: bool = False

    def _sum(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.stats.values())

    @property
    def invocations(self) -> int:
        return self._sum("invocations")

    @property
    def succeeded(self) -> int:
        return self._sum("succeeded")

    @property
    def failed(self) -> int:
        return self._sum("failed")

    @property
    def poisoned(self) -> int:
        return self._sum("poisoned")

    @property
    def max_in_flight(self) -> int:
        return max((s.max_in_flight for s in self.stats.values()), default=0)
