"""The sweep timer: plan each allowed tenant's sweep and send its fan-out to the jobs queue.

The fan-out is sent before the sweep's checkpoint is saved: a sweep killed in between is
planned again from the old checkpoint by the next run, which sends the due leavers again
(applying a leaver twice changes nothing), so nothing waits for the hour-long re-enqueue.
The planning itself (delta round, leaver policy, claim and commit) is in ``sweep.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field

from shared.errors import JobError, SafetyLimitError, StateConflictError, StateStoreError
from shared.jobs.base import RunStatus
from shared.jobs.records import DISPATCH_LOGGER, RETRYABLE, cause_of, utc_now
from shared.jobs.services import JobServices, default_services
from shared.jobs.sweep import claim_sweep, commit_sweep, plan_sweep
from shared.logs import run_context
from shared.storage import RunRecord, StateStore

__all__ = ["SweepResult", "TenantSweep", "run_sweep_timer"]

logger = logging.getLogger(DISPATCH_LOGGER)


@dataclass
class TenantSweep:
    """One tenant's sweep: ``planned`` (its fan-out sent and checkpoint saved), ``aborted``
    (safety limit) or ``failed`` (``cause`` says why; nothing was saved)."""

    tenant: str
    status: RunStatus
    messages: int = 0
    due: int = 0
    cause: str | None = None


@dataclass
class SweepResult:
    """What :func:`run_sweep_timer` did, per tenant."""

    tenants: list[TenantSweep] = field(default_factory=list)

    @property
    def failed(self) -> list[TenantSweep]:
        """Tenants whose sweep did not plan (failed or aborted)."""
        return [t for t in self.tenants if t.status is not RunStatus.PLANNED]

    @property
    def all_failed(self) -> bool:
        return bool(self.tenants) and len(self.failed) == len(self.tenants)

    @property
    def messages(self) -> int:
        return sum(t.messages for t in self.tenants)

    def raise_for_failures(self) -> None:
        """Raise :class:`JobError` naming each tenant whose sweep failed or was aborted."""
        if self.failed:
            details = "; ".join(f"{t.tenant} {t.status.value}: {t.cause}" for t in self.failed)
            raise JobError(
                f"the sweep failed for {len(self.failed)} of {len(self.tenants)} tenant(s): "
                f"{details}"
            )


async def run_sweep_timer(
    *, past_due: bool = False, instance: JobServices | None = None
) -> SweepResult:
    """Plan the sweep for every allowed tenant and send its fan-out to the jobs queue.

    One tenant's failure does not cost the others their sweep; each is recorded and logged,
    and the result names them (the function raises after all tenants ran).
    """
    instance = instance or default_services()
    if past_due:
        logger.warning("sweep timer is past due: running now")
    result = SweepResult()
    for tenant in instance.settings.allowed_tenants:
        run_id = uuid.uuid4().hex[:12]
        with run_context(job="sweep", tenant=tenant, correlation_id=f"sweep-{run_id}"):
            result.tenants.append(await _sweep_tenant(instance, tenant, run_id))
    return result


async def _sweep_tenant(instance: JobServices, tenant: str, run_id: str) -> TenantSweep:
    store = instance.store
    started = utc_now()
    outcome = TenantSweep(tenant, RunStatus.PLANNED)
    planned = 0
    try:
        plan = await plan_sweep(instance, store, tenant, now=time.time(), run_id=run_id)
        try:
            await claim_sweep(store, plan)
        except StateConflictError:  # another run of this sweep wrote the checkpoint
            outcome.cause = (
                "another sweep of this tenant ran or is running (it wrote the checkpoint "
                "since this one read it): nothing sent; that run covers the same round"
            )
            logger.warning("sweep tenant %s: %s", tenant, outcome.cause)
            return await _record_sweep(store, tenant, run_id, started, outcome, 0)
        planned = plan.changes
        outcome.due = len(plan.due)
        if plan.messages:  # sent before the checkpoint is saved: see the module docstring
            outcome.messages = await instance.job_queue().send_all(
                [message.to_json() for message in plan.messages]
            )
        try:
            await commit_sweep(store, plan)
        except StateConflictError as exc:  # a concurrent sweep saved first
            outcome.cause = f"checkpoint not saved ({exc}); the messages were sent"
            logger.warning("sweep tenant %s: %s", tenant, outcome.cause)
        logger.info(
            "sweep tenant %s: %s scan of %d change(s), %d leaver(s) due -> %d message(s), "
            "%d watched",
            tenant,
            "full" if plan.full_scan else "incremental",
            plan.scanned,
            len(plan.due),
            len(plan.messages),
            plan.watched,
        )
    except SafetyLimitError as exc:
        outcome.status, outcome.cause = RunStatus.ABORTED, str(exc)
        logger.error("sweep tenant %s aborted, nothing enqueued: %s", tenant, exc)
    except Exception as exc:  # recorded and named in the result, which the timer raises
        outcome.status, outcome.cause = RunStatus.FAILED, cause_of(exc)
        logger.error(
            "sweep tenant %s failed, checkpoint not saved: %s",
            tenant,
            outcome.cause,
            exc_info=None if isinstance(exc, RETRYABLE) else exc,
        )
    return await _record_sweep(store, tenant, run_id, started, outcome, planned)


async def _record_sweep(
    store: StateStore,
    tenant: str,
    run_id: str,
    started: dt.datetime,
    outcome: TenantSweep,
    planned: int,
) -> TenantSweep:
    try:
        await store.record_run(
            RunRecord(
                "sweep",
                tenant,
                f"sweep-{run_id}",
                started,
                ended_at=utc_now(),
                status=outcome.status.value,
                planned=planned,
                error=outcome.cause,
            )
        )
    except StateStoreError as exc:  # what was planned was sent and saved all the same
        logger.error("sweep tenant %s: could not record the run: %s", tenant, exc)
    return outcome
