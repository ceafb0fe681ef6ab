"""What a run hands back: one Result per operation, the run's counters, progress counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.webapi.operations import Outcome, Result

__all__ = ["EngineReport", "EngineStats", "Progress", "ProgressCallback"]


@dataclass
class EngineStats:
    """Counters of one run."""

    batches_sent: int = 0
    requests_sent: int = 0  # direct-mode requests
    items_sent: int = 0  # operations sent, batched or direct, counting resends
    items_throttled: int = 0  # 429 answers per operation (items and whole batches)
    retries: int = 0  # sends beyond an operation's first
    whole_batch_failures: int = 0  # non-200 envelopes, transport errors, malformed answers
    malformed_responses: int = 0
    transport_errors: int = 0
    readbacks: int = 0
    conflicts_resolved: int = 0
    tenant_pauses: int = 0
    member_binds: int = 0  # PATCH members@odata.bind writes sent (each adds 2-20 members)
    members_coalesced: int = 0  # member adds sent inside those writes
    bind_fallbacks: int = 0  # binds refused ("already exist", missing reference): one by one
    replication_retries: int = 0  # "does not exist" answers retried (eventual consistency)
    max_retry_after: float = 0.0
    elapsed_seconds: float = 0.0
    final_rate_fraction: float = 0.0


@dataclass(frozen=True)
class Progress:
    """Counts passed to the progress callback."""

    total: int
    done: int
    succeeded: int
    failed: int
    gave_up: int
    throttled: int
    in_flight: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class EngineReport:
    """The results, in the order of the operations given, and the run's counters."""

    results: tuple[Result, ...]
    stats: EngineStats = field(default_factory=EngineStats)

    def by_id(self) -> dict[str, Result]:
        """Results keyed by operation id (the first one for a duplicated id)."""
        out: dict[str, Result] = {}
        for r in self.results:
            out.setdefault(r.operation_id, r)
        return out

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)
