"""The two entry points the function app calls: one queue message, one timer tick.

Outcome of a job run — what the run record says, what happens to the queue message:

==========================================  ==========================  =======================
what happened                               run status                  the message
==========================================  ==========================  =======================
every planned change applied (or none       ``succeeded``               completed
left to make)
some people or operations can never         ``completed-with-errors``   completed; each problem
succeed (named); the rest was applied                                   named in log and record
the envelope or payload is invalid (bad     ``invalid``                 completed at once, no
JSON, too deep, unknown job, tenant not                                 retry; every problem in
allowed, a payload that can never be                                    one log line and in the
planned)                                                                run record
``dryRun``                                  ``dry-run``                 completed, nothing done
more writes than                            ``aborted``                 completed, nothing done
``DAEMON_MAX_CHANGES_PER_RUN``
may succeed later: the API unreachable,     ``retrying`` + the cause    raised: the host
5xx or throttling past the run's bound, a                               redelivers it after
token or Key Vault failure, a missing or                                visibilityTimeout
malformed setting, storage failure, a read
during planning that gave up
the same on the last delivery (dequeue      ``poisoned`` + the cause    raised: the host moves
count = host.json maxDequeueCount)                                      it to <queue>-poison
an unexpected exception (a bug)             ``failed`` + its type       raised: redelivered,
                                                                        then poisoned as above
the delivery died without an outcome        ``interrupted`` (written    redelivered by the host
(worker killed, functionTimeout)            by the next delivery)
the last delivery of a message whose        ``requeued``                a fresh copy (same body
earlier deliveries were interrupted                                     and correlation id) is
                                                                        sent, carrying the
                                                                        failure count; this one
                                                                        is completed
real failures already reached               ``retrying``, then          raised without running
maxDequeueCount (over all copies)           ``poisoned``                the job, until the host
                                                                        poisons it
an earlier delivery completed it and the    (no new record)             completed, not run again
message came back (crash before delete)
==========================================  ==========================  =======================

Jobs plan from the directory's current state, so what a failed delivery applied is not redone
by the next one.

Crash-aware deliveries. The host counts every delivery, including those a crash cut short,
and moves a message whose dequeue count exceeds maxDequeueCount to poison *without invoking
the function* (https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages;
a message picked up by five host instances that went down is poisoned, as tested by the
Functions team in https://github.com/Azure/azure-webjobs-sdk/issues/2624). Left alone, a
valid message could be poisoned by worker restarts alone. So each delivery
writes its start and its outcome to an attempt ledger in Table storage (``<prefix>deliveries``,
keyed by correlation id and message id). When the host's last delivery starts and the ledger
shows that some earlier deliveries never recorded an outcome, the message is handed over: a
fresh copy is sent (hidden until its ledger row carries the earlier copy's failure and
delivery counts, then revealed) and this delivery completes. Real failures still add up
across copies, and once they reach maxDequeueCount the message goes to poison with its cause.
A message that kills its worker every time is not handed over forever: after
``HANDOVER_LIMIT`` × maxDequeueCount deliveries in all it is left to the host's poison queue.

The timer (:func:`run_sweep_timer`) sends its fan-out to the jobs queue itself and only then
saves the sweep's checkpoint: a sweep killed in between is planned again from the old
checkpoint by the next run, which sends the due leavers again (applying a leaver twice
changes nothing), so nothing waits for the hour-long re-enqueue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared import telemetry
from shared.errors import (
    ApiError,
    ConfigurationError,
    CredentialError,
    InvalidMessageError,
    JobError,
    RetryableJobError,
    SafetyLimitError,
)
from shared.instance import Instance, current_instance
from shared.jobs.base import Job, JobContext, RunStatus, RunSummary
from shared.jobs.envelope import JobMessage, parse_message
from shared.jobs.operations import OperationsJob
from shared.jobs.provision import ProvisionJob
from shared.jobs.sweep import claim_sweep, commit_sweep, plan_sweep
from shared.logs import run_context
from shared.storage import (
    DeliveryLedger,
    RunRecord,
    StateConflictError,
    StateStore,
    StateStoreError,
)
from shared.webapi import Outcome

__all__ = [
    "HANDOVER_LIMIT",
    "JOBS",
    "RETRYABLE",
    "Decision",
    "DeliveryHistory",
    "RunStatus",
    "SweepResult",
    "TenantSweep",
    "handle_queue_message",
    "run_job",
    "run_sweep_timer",
]

logger = logging.getLogger(__name__)

JOBS: Mapping[str, Job] = {job.name: job for job in (ProvisionJob(), OperationsJob())}

# Failures that may go away (outage, throttling, a setting or credential being fixed): the
# message is redelivered, and poisoned after maxDequeueCount real failures.
RETRYABLE: tuple[type[Exception], ...] = (
    ApiError,
    CredentialError,
    ConfigurationError,
    StateStoreError,
    RetryableJobError,
)

HANDOVER_LIMIT = 3  # hand over at most until HANDOVER_LIMIT x maxDequeueCount deliveries
HANDOVER_HIDDEN_SECONDS = 30  # a fresh copy stays hidden until its ledger row is written
INVALID_JOB = "invalid-message"  # the job name of run records of unparseable messages
_MAX_CAUSE_CHARS = 1_000

_FAILURE_VALUES = frozenset(s.value for s in RunStatus if s.is_failure)
_COMPLETING_VALUES = frozenset(
    s.value
    for s in RunStatus
    if s.completes and s not in (RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.PLANNED)
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > _MAX_CAUSE_CHARS:
        text = text[:_MAX_CAUSE_CHARS] + "…"
    return f"{type(exc).__name__}: {text}"


# -- deliveries ----------------------------------------------------------------------------


class Decision(enum.Enum):
    RUN = "run"
    HAND_OVER = "hand-over"  # last delivery after crashes: send a fresh copy, complete this
    EXHAUSTED = "exhausted"  # real failures reached maxDequeueCount: do not run again
    DONE = "done"  # an earlier delivery of this copy completed it


@dataclass(frozen=True)
class DeliveryHistory:
    """What the attempt ledger says about the deliveries before this one."""

    delivery: int  # the host's dequeue count of this delivery (this copy)
    failures: int  # real failures before it: this copy and the copies it was handed from
    interrupted: int  # earlier deliveries of this copy that recorded no failure
    deliveries: int  # deliveries before this one, all copies
    completed_as: str | None = None  # an earlier delivery of this copy completed it so
    last_cause: str | None = None

    @classmethod
    def of(cls, ledger: DeliveryLedger, delivery: int) -> DeliveryHistory:
        earlier = sorted((n, a) for n, a in ledger.attempts.items() if n < delivery)
        own_failures = sum(1 for _, a in earlier if a.status in _FAILURE_VALUES)
        completed = next((a.status for _, a in earlier if a.status in _COMPLETING_VALUES), None)
        causes = [a.cause for _, a in earlier if a.status in _FAILURE_VALUES and a.cause]
        return cls(
            delivery=delivery,
            failures=ledger.carried_failures + own_failures,
            interrupted=max(0, delivery - 1 - own_failures),
            deliveries=ledger.carried_deliveries + delivery - 1,
            completed_as=completed,
            last_cause=causes[-1] if causes else ledger.carried_cause,
        )

    def decide(self, max_dequeue_count: int) -> Decision:
        if self.completed_as is not None:
            return Decision.DONE
        if self.failures >= max_dequeue_count:
            return Decision.EXHAUSTED
        if (
            self.delivery >= max_dequeue_count
            and self.interrupted > 0
            and self.deliveries + 1 < HANDOVER_LIMIT * max_dequeue_count
        ):
            return Decision.HAND_OVER
        return Decision.RUN


async def handle_queue_message(
    body: bytes | str,
    *,
    message_id: str = "",
    dequeue_count: int = 1,
    instance: Instance | None = None,
    max_dequeue_count: int | None = None,
    jobs: Mapping[str, Job] | None = None,
    traceparent: str | None = None,
    inserted_at: dt.datetime | None = None,
) -> RunSummary | None:
    """Validate and run one job message, following the outcome table above.

    Returns the run's summary, or None for a message completed as invalid; raises (so the
    host redelivers or poisons it) when the run may succeed later or failed unexpectedly.
    ``max_dequeue_count`` defaults to host.json's ``maxDequeueCount``; ``jobs`` to
    :data:`JOBS`. ``traceparent`` (the invocation's W3C trace context) parents the job's
    telemetry span; ``inserted_at`` (when the message was enqueued) gives its queue age.
    """
    jobs = JOBS if jobs is None else jobs
    if inserted_at is not None:
        waited = (_now() - inserted_at).total_seconds()
        telemetry.record("daemon.queue_age", max(0.0, waited))
    try:
        instance = instance or current_instance()
    except ConfigurationError as exc:
        logger.error(
            "Job message %s (delivery %d) cannot run, the app is not configured: %s; it "
            "will be redelivered",
            message_id or "?",
            dequeue_count,
            exc,
        )
        raise
    problem: str | None = None
    try:
        message = parse_message(
            body, jobs=jobs.keys(), allowed_tenants=instance.settings.allowed_tenants
        )
    except InvalidMessageError as exc:
        problem = str(exc)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # the parser's own limits (nesting depth, digits of an integer): the same message
        # fails the same way every time
        problem = f"the message cannot be parsed: {_cause(exc)}"
    if problem is not None:
        logger.error(
            "Invalid job message %s (delivery %d), completed without retry: %s",
            message_id or "?",
            dequeue_count,
            problem,
        )
        await _record_invalid(instance, message_id, problem)
        return None
    with (
        run_context(job=message.job, tenant=message.tenant, correlation_id=message.correlation_id),
        telemetry.span(
            "daemon.job",
            traceparent=traceparent,
            job=message.job,
            tenant=message.tenant,
            correlation_id=message.correlation_id,
            delivery=dequeue_count,
        ),
    ):
        limit = max_dequeue_count or instance.max_dequeue_count
        if not message_id:  # not from a queue (a direct call): no ledger
            return await run_job(
                instance,
                message,
                dequeue_count=dequeue_count,
                last_delivery=dequeue_count >= limit,
                jobs=jobs,
            )
        return await _deliver(instance, message, body, message_id, dequeue_count, limit, jobs)


async def _record_invalid(instance: Instance, message_id: str, problem: str) -> None:
    now = _now()
    try:
        await instance.store.record_run(
            RunRecord(
                INVALID_JOB,
                "",
                message_id or f"unknown-{uuid.uuid4().hex[:12]}",
                now,
                ended_at=now,
                status=RunStatus.INVALID.value,
                error=problem,
            )
        )
    except (StateStoreError, ConfigurationError) as exc:  # the message is completed anyway
        logger.warning("Could not record the invalid message %s: %s", message_id or "?", exc)


async def _deliver(
    instance: Instance,
    message: JobMessage,
    body: bytes | str,
    message_id: str,
    delivery: int,
    limit: int,
    jobs: Mapping[str, Job],
) -> RunSummary:
    store = instance.store
    ledger = await store.get_deliveries(message.correlation_id, message_id)
    await _close_interrupted(store, message, ledger, delivery)
    history = DeliveryHistory.of(ledger, delivery)
    decision = history.decide(limit)
    if decision is Decision.DONE:
        logger.warning(
            "Message %s (delivery %d of %d) was already completed by an earlier delivery (%s); "
            "completed without running again",
            message_id,
            delivery,
            limit,
            history.completed_as,
        )
        summary = _summary(message)
        summary.status = RunStatus(history.completed_as)
        return summary
    if decision is Decision.HAND_OVER:
        return await _hand_over(instance, message, body, message_id, history, limit)
    if decision is Decision.EXHAUSTED:
        await _refuse_exhausted(store, message, message_id, history, limit)
    return await run_job(
        instance,
        message,
        dequeue_count=delivery,
        last_delivery=delivery >= limit,
        message_id=message_id,
        jobs=jobs,
    )


async def _close_interrupted(
    store: StateStore, message: JobMessage, ledger: DeliveryLedger, delivery: int
) -> None:
    """Close the ``running`` records of earlier deliveries that died without an outcome."""
    for number, attempt in sorted(ledger.attempts.items()):
        if number >= delivery or attempt.status is not None or attempt.started_at is None:
            continue
        cause = (
            f"delivery {number} of message {ledger.message_id} stopped before recording an "
            "outcome (worker killed, host stopped or functionTimeout); the host redelivered it"
        )
        logger.warning("job %s %s: %s", message.job, message.correlation_id, cause)
        await store.record_run(
            RunRecord(
                message.job,
                message.tenant,
                message.correlation_id,
                attempt.started_at,
                ended_at=_now(),
                status=RunStatus.INTERRUPTED.value,
                error=cause,
                dry_run=message.dry_run,
            )
        )
        await store.record_delivery(
            message.correlation_id,
            ledger.message_id,
            number,
            status=RunStatus.INTERRUPTED.value,
            cause=cause,
        )


async def _hand_over(
    instance: Instance,
    message: JobMessage,
    body: bytes | str,
    message_id: str,
    history: DeliveryHistory,
    limit: int,
) -> RunSummary:
    store = instance.store
    started = _now()
    queue = instance.job_queue()
    text = body if isinstance(body, str) else body.decode("utf-8")
    fresh = await queue.send(text, hidden_for=HANDOVER_HIDDEN_SECONDS)
    await store.carry_deliveries(
        message.correlation_id,
        fresh.id,
        failures=history.failures,
        deliveries=history.deliveries + 1,
        carried_from=message_id,
        cause=history.last_cause,
    )
    try:
        await queue.reveal(fresh)
    except StateStoreError as exc:  # it becomes visible on its own a little later
        logger.warning("Could not reveal message %s at once: %s", fresh.id, exc)
    summary = _summary(message)
    summary.status = RunStatus.REQUEUED
    summary.cause = (
        f"delivery {history.delivery} of {limit} after {history.interrupted} interrupted "
        f"deliver{'y' if history.interrupted == 1 else 'ies'}: handed over to message "
        f"{fresh.id} with {history.failures} real failure(s) carried"
    )
    logger.warning("%s", summary.line())
    await store.record_run(_record(message, summary, started))
    await store.record_delivery(
        message.correlation_id,
        message_id,
        history.delivery,
        started_at=started,
        status=RunStatus.REQUEUED.value,
        cause=summary.cause,
    )
    return summary


async def _refuse_exhausted(
    store: StateStore,
    message: JobMessage,
    message_id: str,
    history: DeliveryHistory,
    limit: int,
) -> None:
    started = _now()
    summary = _summary(message)
    last = history.delivery >= limit
    summary.status = RunStatus.POISONED if last else RunStatus.RETRYING
    summary.cause = (
        f"it already failed {history.failures} time(s) (maxDequeueCount {limit}), last: "
        f"{history.last_cause or 'unknown'}; not run again"
        + ("; the host moves it to poison" if last else "; waiting for the host to poison it")
    )
    logger.error("%s", summary.line())
    await store.record_run(_record(message, summary, started))
    await store.record_delivery(  # the ledger keeps the job's own last cause
        message.correlation_id,
        message_id,
        history.delivery,
        started_at=started,
        status=summary.status.value,
        cause=history.last_cause,
    )
    raise RetryableJobError(summary.cause)


# -- one run -------------------------------------------------------------------------------


def _summary(message: JobMessage) -> RunSummary:
    return RunSummary(message.job, message.tenant, message.correlation_id, message.dry_run)


def _record(
    message: JobMessage, summary: RunSummary, started: dt.datetime, *, ended: bool = True
) -> RunRecord:
    causes = [summary.cause] if summary.cause else []
    error = "; ".join([*summary.problems, *summary.errors, *causes])
    return RunRecord(
        message.job,
        message.tenant,
        message.correlation_id,
        started,
        ended_at=_now() if ended else None,
        status=summary.status.value,
        planned=summary.planned,
        applied=summary.applied,
        failed=summary.failed + len(summary.problems),
        throttled=summary.throttled,
        token_requests=summary.token_requests,
        error=error or None,
        dry_run=message.dry_run,
    )


_LEVELS = {
    RunStatus.SUCCEEDED: logging.INFO,
    RunStatus.DRY_RUN: logging.INFO,
    RunStatus.COMPLETED_WITH_ERRORS: logging.WARNING,
    RunStatus.RETRYING: logging.WARNING,
    RunStatus.INTERRUPTED: logging.WARNING,
}


async def run_job(
    instance: Instance,
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
    ctx = JobContext(instance, store, message)
    summary = _summary(message)
    started, clock0 = _now(), time.monotonic()
    tokens0 = instance.token_cache.stats.token_requests
    summary.status = RunStatus.RUNNING
    if message_id:  # first: a crash after it is seen (and its run record closed) later
        await store.record_delivery(
            message.correlation_id, message_id, dequeue_count, started_at=started
        )
    await store.record_run(_record(message, summary, started, ended=False))
    raised: BaseException | None = None
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
        summary.cause = _cause(exc)
        raised = exc
    except asyncio.CancelledError as exc:  # functionTimeout, or the host stopping
        summary.status = RunStatus.INTERRUPTED
        summary.cause = "cancelled (functionTimeout, or the host stopped) before it ended"
        raised = exc
    except Exception as exc:
        summary.status = RunStatus.FAILED
        summary.cause = _cause(exc)
        raised = exc
        logger.error(
            "job %s %s failed unexpectedly (delivery %d): %s",
            message.job,
            message.correlation_id,
            dequeue_count,
            summary.cause,
            exc_info=exc,
        )
    if summary.status is RunStatus.RUNNING:
        summary.status = (
            RunStatus.COMPLETED_WITH_ERRORS
            if summary.failed or summary.problems
            else RunStatus.SUCCEEDED
        )
    if summary.status in (RunStatus.RETRYING, RunStatus.FAILED) and last_delivery:
        summary.status = RunStatus.POISONED
    summary.seconds = time.monotonic() - clock0
    summary.token_requests = instance.token_cache.stats.token_requests - tokens0
    logger.log(_LEVELS.get(summary.status, logging.ERROR), "%s", summary.line())
    await store.record_run(_record(message, summary, started))
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


async def _plan_and_apply(ctx: JobContext, job: Job, summary: RunSummary) -> None:
    message = ctx.message
    plan = await job.plan(ctx)
    summary.planned = len(plan.operations)
    summary.problems = list(plan.problems)
    for problem in plan.problems:
        logger.error("job %s %s: %s", message.job, message.correlation_id, problem)
    if plan.changes > ctx.instance.settings.max_changes_per_run:
        raise SafetyLimitError(message.job, plan.changes, ctx.instance.settings.max_changes_per_run)
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
    if summary.gave_up:
        first = next(r for r in report.results if r.outcome is Outcome.GAVE_UP)
        raise RetryableJobError(
            f"{summary.gave_up} operation(s) could not be applied now (throttling, outage or "
            f"no token); first: {first.operation_id}: {first.error}; only they are retried "
            "on redelivery"
        )


# -- the sweep timer -----------------------------------------------------------------------


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
    *, past_due: bool = False, instance: Instance | None = None
) -> SweepResult:
    """Plan the sweep for every allowed tenant and send its fan-out to the jobs queue.

    One tenant's failure does not cost the others their sweep; each is recorded and logged,
    and the result names them (the function raises after all tenants ran).
    """
    instance = instance or current_instance()
    if past_due:
        logger.warning("sweep timer is past due: running now")
    result = SweepResult()
    for tenant in instance.settings.allowed_tenants:
        run_id = uuid.uuid4().hex[:12]
        with run_context(job="sweep", tenant=tenant, correlation_id=f"sweep-{run_id}"):
            result.tenants.append(await _sweep_tenant(instance, tenant, run_id))
    return result


async def _sweep_tenant(instance: Instance, tenant: str, run_id: str) -> TenantSweep:
    store = instance.store
    started = _now()
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
        outcome.status, outcome.cause = RunStatus.FAILED, _cause(exc)
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
                ended_at=_now(),
                status=outcome.status.value,
                planned=planned,
                error=outcome.cause,
            )
        )
    except StateStoreError as exc:  # what was planned was sent and saved all the same
        logger.error("sweep tenant %s: could not record the run: %s", tenant, exc)
    return outcome
