"""What every job shares: its context, its plan, and the summary of a run."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.instance import Instance
from shared.jobs.envelope import JobMessage
from shared.storage import StateStore
from shared.webapi import ApiClient, BatchEngine, EngineReport, Operation

__all__ = ["Job", "JobContext", "Plan", "RunSummary"]


@dataclass
class JobContext:
    """One run of one job for one tenant."""

    instance: Instance
    store: StateStore
    message: JobMessage
    clock: Callable[[], float] = time.time

    @property
    def tenant(self) -> str:
        return self.message.tenant

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.message.payload

    def client(self) -> ApiClient:
        return self.instance.api_client(self.tenant)

    def engine(self) -> BatchEngine:
        return self.instance.batch_engine(self.tenant)


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
    status: str = "succeeded"

    def line(self) -> str:
        return (
            f"job {self.job} tenant {self.tenant} correlation {self.correlation_id}: "
            f"{self.status}{' (dry run)' if self.dry_run else ''}; planned {self.planned}, "
            f"applied {self.applied}, failed {self.failed + len(self.problems)}, gave up "
            f"{self.gave_up}, throttled {self.throttled}, token requests "
            f"{self.token_requests}, {self.seconds:.1f}s"
        )


class Job(Protocol):
    """A job plans from the directory's state (reads only) and is applied by the runner."""

    name: str

    async def plan(self, ctx: JobContext) -> Plan: ...
