"""One run of one job: plan, check the safety limit, apply (unless a dry run), record the
run and log its one summary line. Which outcome each failure gives, and what then happens
to the message, is the table in ``dispatch.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from shared import telemetry
from shared.errors import InvalidMessageError, RetryableJobError, SafetyLimitError
from shared.jobs.base import Job, RunStatus, RunSummary
from shared.jobs.context import JobContext
from shared.jobs.envelope import JobMessage
from shared.jobs.records import (
    DISPATCH_LOGGER,
    RETRYABLE,
    cause_of,
    level_of,
    run_record,
    summary_of,
    utc_now,
)
from shared.jobs.registry import JOBS
from shared.jobs.services import JobServices, job_context
from shared.webapi import EngineReport, Outcome

__all__ = ["run_job"]

logger = logging.getLogger(DISPATCH_LOGGER)


async def run_job(
    instance: JobServices,
    message: JobMessage,
    *,
    dequeue_count: int = 1,
    last_delivery: bool = False,
    message_id: str = "",
    jobs: Mapping[str, Job] | None = None,
) -> RunSummary:
    """Plan, check the safety limit, apply (unless dry run), record and log one line.

    Raises when the message must not be completed (see the outcome table):
    :class:`RetryableJobError` for a retryable failure, the exception itself for an
    unexpected one. ``last_delivery`` records ``poisoned`` instead of ``retrying``/``failed``.
    """
    job = (JOBS if jobs is None else jobs)[message.job]
    store = instance.store
    ctx = job_context(instance, message)
    summary = summary_of(message)
    started, clock0 = utc_now(), time.monotonic()
    tokens0 = instance.token_requests
    summary.status = RunStatus.RUNNING
    if message_id:  # first: a crash after it is seen (and its run record closed) later
        await store.record_delivery(
            message.correlation_id, message_id, dequeue_count, started_at=started
        )
    await store.record_run(run_record(message, summary, started, ended=False))
    raised = await _run(ctx, job, summary, dequeue_count)
    _settle(summary, last_delivery=last_delivery)
    summary.seconds = time.monotonic() - clock0
    summary.token_requests = instance.token_requests - tokens0
    logger.log(level_of(summary.status), "%s", summary.line())
    await store.record_run(run_record(message, summary, started))
    if message_id:
        await store.record_delivery(
            message.correlation_id,
            message_id,
            dequeue_count,
            status=summary.status.value,
            cause=summary.cause,
        )
    if raised is None:
        return summary
    if isinstance(raised, RETRYABLE):
        what = (
            "last delivery: the host moves it to poison"
            if last_delivery
            else "the message will be redelivered"
        )
        raise RetryableJobError(f"{summary.cause}; {what}") from raised
    raise raised


async def _run(
    ctx: JobContext, job: Job, summary: RunSummary, dequeue_count: int
) -> BaseException | None:
    """Plan and apply; set the status of a run that did not end normally. Returns the
    exception to raise once the run is recorded (None: the message is completed)."""
    message = ctx.message
    try:
        await _plan_and_apply(ctx, job, summary)
    except SafetyLimitError as exc:
        summary.status = RunStatus.ABORTED
        summary.errors.append(str(exc))
        logger.error("job %s %s aborted: %s", message.job, message.correlation_id, exc)
    except InvalidMessageError as exc:
        summary.status = RunStatus.INVALID
        summary.errors.append(str(exc))
        logger.error(
            "Invalid job message %s (delivery %d), completed without retry: %s",
            message.correlation_id,
            dequeue_count,
            exc,
        )
    except RETRYABLE as exc:
        summary.status = RunStatus.RETRYING
        summary.cause = cause_of(exc)
        return exc
    except asyncio.CancelledError as exc:  # functionTimeout, or the host stopping
        summary.status = RunStatus.INTERRUPTED
        summary.cause = "cancelled (functionTimeout, or the host stopped) before it ended"
        return exc
    except Exception as exc:
        summary.status = RunStatus.FAILED
        summary.cause = cause_of(exc)
        logger.error(
            "job %s %s failed unexpectedly (delivery %d): %s",
            message.job,
            message.correlation_id,
            dequeue_count,
            summary.cause,
            exc_info=exc,
        )
        return exc
    return None


def _settle(summary: RunSummary, *, last_delivery: bool) -> None:
    """The final status: a run still ``running`` succeeded (with errors, if any); a
    retryable or unexpected failure on the last delivery is ``poisoned``."""
    if summary.status is RunStatus.RUNNING:
        summary.status = (
            RunStatus.COMPLETED_WITH_ERRORS
            if summary.failed or summary.problems
            else RunStatus.SUCCEEDED
        )
    if summary.status in (RunStatus.RETRYING, RunStatus.FAILED) and last_delivery:
        summary.status = RunStatus.POISONED


async def _plan_and_apply(ctx: JobContext, job: Job, summary: RunSummary) -> None:
    message = ctx.message
    plan = await job.plan(ctx)
    summary.planned = len(plan.operations)
    summary.problems = list(plan.problems)
    for problem in plan.problems:
        logger.error("job %s %s: %s", message.job, message.correlation_id, problem)
    limit = ctx.settings.max_changes_per_run
    if plan.changes > limit:
        raise SafetyLimitError(message.job, plan.changes, limit)
    if message.dry_run:
        summary.status = RunStatus.DRY_RUN
        for line in plan.lines:
            logger.info("dry run %s: would %s", message.correlation_id, line)
        return
    if not plan.operations:
        return
    report = await ctx.engine().run(plan.operations)
    for after in plan.after:
        await after(report)
    _count(message, report, summary)
    if summary.gave_up:
        first = next(r for r in report.results if r.outcome is Outcome.GAVE_UP)
        raise RetryableJobError(
            f"{summary.gave_up} operation(s) could not be applied now (throttling, outage or "
            f"no token); first: {first.operation_id}: {first.error}; only they are retried "
            "on redelivery"
        )


def _count(message: JobMessage, report: EngineReport, summary: RunSummary) -> None:
    """The engine's outcomes into the summary and telemetry; each failure logged."""
    summary.applied = report.count(Outcome.SUCCEEDED)
    summary.failed = report.count(Outcome.FAILED)
    summary.gave_up = report.count(Outcome.GAVE_UP)
    summary.throttled = report.stats.items_throttled
    attributes = {"job": message.job, "tenant": message.tenant}
    for outcome in Outcome:
        telemetry.add(
            "daemon.operations", report.count(outcome), {**attributes, "outcome": outcome.value}
        )
    telemetry.add("daemon.throttled", summary.throttled, attributes)
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
