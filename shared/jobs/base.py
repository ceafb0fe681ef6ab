"""What every job shares: its plan, the statuses and the summary of a run, the Job protocol.

A job's context (what it is given to plan) is in :mod:`shared.jobs.context`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from shared.jobs.context import JobContext
from shared.webapi import EngineReport, Operation

__all__ = ["AfterApply", "Job", "JobContext", "Plan", "RunStatus", "RunSummary"]


class RunStatus(str, enum.Enum):
    """The status of a run record (``daemonruns``); the outcome table is in
    ``shared/jobs/dispatch.py``. Values are what the table stores and the log line shows."""

    RUNNING = "running"  # started, no outcome yet
    SUCCEEDED = "succeeded"  # every planned change applied (or nothing to do)
    COMPLETED_WITH_ERRORS = "completed-with-errors"  # some people/operations failed for good
    INVALID = "invalid"  # the message or payload can never succeed: completed
    DRY_RUN = "dry-run"  # planned and logged, nothing applied
    ABORTED = "aborted"  # the safety limit stopped it, nothing applied
    RETRYING = "retrying"  # may succeed later: raised, the host redelivers
    POISONED = "poisoned"  # failed on its last delivery: the host moves it to poison
    FAILED = "failed"  # an unexpected exception (named): raised, the host redelivers
    INTERRUPTED = "interrupted"  # the delivery died (crash, timeout) before an outcome
    REQUEUED = "requeued"  # last delivery after crashes: handed to a fresh copy
    PLANNED = "planned"  # a sweep that planned and enqueued its fan-out

    def __str__(self) -> str:
        return self.value

    @property
    def completes(self) -> bool:
        """True when the message is completed (deleted) after a run with this status."""
        return self not in (RunStatus.RETRYING, RunStatus.POISONED, RunStatus.FAILED)

    @property
    def is_failure(self) -> bool:
        """True for a delivery that really failed (what counts towards poison); a delivery
        interrupted by a crash is not one."""
        return self in (RunStatus.RETRYING, RunStatus.POISONED, RunStatus.FAILED)


AfterApply = Callable[[EngineReport], Awaitable[None]]


@dataclass
class Plan:
    """The changes a job would make. ``problems`` are input items that cannot be planned
    (they fail alone; the rest is applied). ``after`` runs once the changes were applied."""

    operations: list[Operation] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # human-readable, for dry runs and logs
    problems: list[str] = field(default_factory=list)
    after: list[AfterApply] = field(default_factory=list)

    @property
    def changes(self) -> int:
        """Planned writes (what the safety limit counts)."""
        return sum(1 for op in self.operations if op.method.upper() != "GET")


@dataclass
class RunSummary:
    job: str
    tenant: str
    correlation_id: str
    dry_run: bool
    planned: int = 0
    applied: int = 0
    failed: int = 0
    gave_up: int = 0
    throttled: int = 0
    token_requests: int = 0
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    status: RunStatus = RunStatus.SUCCEEDED
    cause: str | None = None  # why it will be retried, was poisoned or failed

    def line(self) -> str:
        return (
            f"job {self.job} tenant {self.tenant} correlation {self.correlation_id}: "
            f"{self.status.value}{' (dry run)' if self.dry_run else ''}; planned "
            f"{self.planned}, applied {self.applied}, failed {self.failed + len(self.problems)}"
            f", gave up {self.gave_up}, throttled {self.throttled}, token requests "
            f"{self.token_requests}, {self.seconds:.1f}s"
            + (f"; cause: {self.cause}" if self.cause else "")
        )


class Job(Protocol):
    """A job plans from the directory's state (reads only) and is applied by the runner."""

    name: str

    async def plan(self, ctx: JobContext) -> Plan: ...
