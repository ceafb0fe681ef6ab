"""What the state store keeps, as plain immutable values (no storage code here).

- :class:`Checkpoint`: where a job stands for one tenant (delta link, phase, cursor, data).
- :class:`RunRecord`: one run of a job for one tenant, with its counts and outcome.
- :class:`DeliveryLedger` of :class:`DeliveryAttempt`: how each delivery of one queue
  message went, so "the host redelivered after a crash" is told apart from "the job failed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Checkpoint", "DeliveryAttempt", "DeliveryLedger", "RunRecord"]


@dataclass(frozen=True)
class Checkpoint:
    """Where a job stands for one tenant. ``etag`` is set on a checkpoint read from the store
    and must be kept when writing it back (use :func:`dataclasses.replace`)."""

    job: str
    tenant: str
    delta_link: str | None = None
    phase: str | None = None
    cursor: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # delta links carry opaque tokens: show only their length
        link = f"<{len(self.delta_link)} chars>" if self.delta_link else None
        return (
            f"Checkpoint(job={self.job!r}, tenant={self.tenant!r}, delta_link={link}, "
            f"phase={self.phase!r}, cursor={self.cursor!r}, updated_at={self.updated_at!r})"
        )


@dataclass(frozen=True)
class RunRecord:
    """One run of a job for one tenant (recorded when it starts, again when it ends)."""

    job: str
    tenant: str
    correlation_id: str
    started_at: datetime
    ended_at: datetime | None = None
    status: str = "running"
    planned: int = 0
    applied: int = 0
    failed: int = 0
    throttled: int = 0
    token_requests: int = 0
    error: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class DeliveryAttempt:
    """One delivery of a queue message: when it started and how it ended (``status`` None:
    it never recorded an end — the worker died or is still running)."""

    started_at: datetime | None = None
    status: str | None = None
    cause: str | None = None


@dataclass(frozen=True)
class DeliveryLedger:
    """The attempt ledger of one queue message (one copy: one message id).

    ``attempts`` maps the host's dequeue count to that delivery. ``carried_*`` come from an
    earlier copy of the same message that was handed over to this one.
    """

    correlation_id: str
    message_id: str
    attempts: Mapping[int, DeliveryAttempt] = field(default_factory=dict)
    carried_failures: int = 0
    carried_deliveries: int = 0
    carried_from: str | None = None
    carried_cause: str | None = None
