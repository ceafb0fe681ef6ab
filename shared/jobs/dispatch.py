"""The two entry points the function app calls: one queue message, one timer tick.

Queue semantics (DESIGN.md §3, §6): a message that can never succeed is logged and
completed at once; a retryable failure raises, so the host redelivers it and, after
maxDequeueCount deliveries, moves it to ``<queue>-poison``. Delivery is at least once and
every job plans from the directory's state, so a redelivered message changes nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping

from shared.errors import (
    ApiError,
    CredentialError,
    InvalidMessageError,
    RetryableJobError,
    SafetyLimitError,
)
from shared.instance import Instance, current_instance
from shared.jobs.base import Job, JobContext, RunSummary
from shared.jobs.envelope import JobMessage, parse_message
from shared.jobs.operations import OperationsJob
from shared.jobs.provision import ProvisionJob
from shared.jobs.sweep import commit_sweep, plan_sweep
from shared.storage import RunRecord
from shared.webapi import Outcome

__all__ = ["JOBS", "handle_queue_message", "run_job", "run_sweep_timer"]

logger = logging.getLogger(__name__)

JOBS: Mapping[str, Job] = {job.name: job for job in (ProvisionJob(), OperationsJob())}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def handle_queue_message(
    body: bytes | str,
    *,
    message_id: str = "",
    dequeue_count: int = 1,
    instance: Instance | None = None,
) -> RunSummary | None:
    """Validate and run one job message. Returns None for a message completed as invalid."""
    instance = instance or current_instance()
    try:
        message = parse_message(
            body, jobs=JOBS.keys(), allowed_tenants=instance.settings.allowed_tenants
        )
    except InvalidMessageError as exc:
        logger.error(
            "Invalid job message %s (delivery %d), completed without retry: %s",
            message_id or "?",
            dequeue_count,
            exc,
        )
        return None
    return await run_job(instance, message, dequeue_count=dequeue_count)


async def run_job(instance: Instance, message: JobMessage, *, dequeue_count: int = 1) -> RunSummary:
    """Plan, check the safety limit, apply (unless dry run), record and log one line."""
    job = JOBS[message.job]
    store = instance.store
    ctx = JobContext(instance, store, message)
    summary = RunSummary(message.job, message.tenant, message.correlation_id, message.dry_run)
    started, clock0 = _now(), time.monotonic()
    tokens0 = instance.token_cache.stats.token_requests
    record = RunRecord(
        message.job, message.tenant, message.correlation_id, started, dry_run=message.dry_run
    )
    await store.record_run(record)
    retry: RetryableJobError | None = None
    try:
        plan = await job.plan(ctx)
        summary.planned = len(plan.operations)
        summary.problems = list(plan.problems)
        for problem in plan.problems:
            logger.error("job %s %s: %s", message.job, message.correlation_id, problem)
        if plan.changes > instance.settings.max_changes_per_run:
            raise SafetyLimitError(message.job, plan.changes, instance.settings.max_changes_per_run)
        if message.dry_run:
            summary.status = "dry-run"
            for line in plan.lines:
                logger.info("dry run %s: would %s", message.correlation_id, line)
        elif plan.operations:
            report = await ctx.engine().run(plan.operations)
            for after in plan.after:
                await after(report)
            summary.applied = report.count(Outcome.SUCCEEDED)
            summary.failed = report.count(Outcome.FAILED)
            summary.gave_up = report.count(Outcome.GAVE_UP)
            summary.throttled = report.stats.items_throttled
            for result in report.results:
                if result.outcome is Outcome.FAILED:
                    summary.errors.append(f"{result.operation_id}: {result.error}")
                    logger.error(
                        "job %s %s: %s failed: %s",
                        message.job,
                        message.correlation_id,
                        result.operation_id,
                        result.error,
                    )
            if summary.gave_up:
                retry = RetryableJobError(
                    f"{summary.gave_up} operation(s) could not be applied now (throttling or "
                    "outage); the message will be redelivered and only they will be retried"
                )
        if summary.failed or summary.problems:
            summary.status = "completed-with-errors"
    except SafetyLimitError as exc:
        summary.status = "aborted"
        summary.errors.append(str(exc))
        logger.error("job %s %s aborted: %s", message.job, message.correlation_id, exc)
    except InvalidMessageError as exc:
        summary.status = "invalid"
        summary.errors.append(str(exc))
        logger.error(
            "Invalid job message %s (delivery %d), completed without retry: %s",
            message.correlation_id,
            dequeue_count,
            exc,
        )
    except ApiError as exc:
        summary.status = "retrying"
        summary.errors.append(str(exc))
        retry = RetryableJobError(f"the API could not be called: {exc}")
    finally:
        summary.seconds = time.monotonic() - clock0
        summary.token_requests = instance.token_cache.stats.token_requests - tokens0
        if retry is not None:
            summary.status = "retrying"
        await store.record_run(
            RunRecord(
                message.job,
                message.tenant,
                message.correlation_id,
                started,
                ended_at=_now(),
                status=summary.status,
                planned=summary.planned,
                applied=summary.applied,
                failed=summary.failed + len(summary.problems),
                throttled=summary.throttled,
                token_requests=summary.token_requests,
                error="; ".join([*summary.problems, *summary.errors])[:2000] or None,
                dry_run=message.dry_run,
            )
        )
        logger.info("%s", summary.line())
    if retry is not None:
        raise retry
    return summary


async def run_sweep_timer(*, past_due: bool = False, instance: Instance | None = None) -> list[str]:
    """Plan the sweep for every allowed tenant; return the job messages to enqueue."""
    instance = instance or current_instance()
    store = instance.store
    if past_due:
        logger.warning("sweep timer is past due: running now")
    texts: list[str] = []
    for tenant in instance.settings.allowed_tenants:
        started = _now()
        try:
            plan = await plan_sweep(instance, store, tenant, now=time.time())
        except (SafetyLimitError, ApiError, CredentialError) as exc:
            # one tenant's failure must not cost the others their sweep: log, record, go on
            status = "aborted" if isinstance(exc, SafetyLimitError) else "failed"
            logger.error("sweep tenant %s %s, nothing enqueued: %s", tenant, status, exc)
            await store.record_run(
                RunRecord(
                    "sweep",
                    tenant,
                    f"sweep-{started:%Y%m%dT%H%M%S}",
                    started,
                    ended_at=_now(),
                    status=status,
                    error=str(exc),
                )
            )
            continue
        texts.extend(message.to_json() for message in plan.messages)
        await commit_sweep(store, plan)
        await store.record_run(
            RunRecord(
                "sweep",
                tenant,
                f"sweep-{plan.run_id}",
                started,
                ended_at=_now(),
                status="planned",
                planned=plan.changes,
                token_requests=instance.token_cache.stats.token_requests,
            )
        )
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
    return texts
