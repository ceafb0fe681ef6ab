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

Where each part lives: this module is the queue entry point (:func:`handle_queue_message`:
parse, then run or decide); ``deliveries.py`` the attempt ledger's decisions; ``run.py``
one run (plan, safety limit, apply); ``records.py`` the summary, run record and log level;
``sweep_timer.py`` the timer; ``services.py`` what they use of the function instance and
the narrow context each job gets; ``registry.py`` the jobs a message may name.

The timer (:func:`run_sweep_timer`) sends its fan-out to the jobs queue itself and only then
saves the sweep's checkpoint: a sweep killed in between is planned again from the old
checkpoint by the next run, which sends the due leavers again (applying a leaver twice
changes nothing), so nothing waits for the hour-long re-enqueue.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping

from shared import telemetry
from shared.errors import ConfigurationError, InvalidMessageError, StateStoreError
from shared.jobs.base import Job, RunStatus, RunSummary
from shared.jobs.deliveries import HANDOVER_LIMIT, Decision, DeliveryHistory, deliver
from shared.jobs.envelope import parse_message
from shared.jobs.records import DISPATCH_LOGGER, RETRYABLE, cause_of, utc_now
from shared.jobs.registry import JOBS
from shared.jobs.run import run_job
from shared.jobs.services import JobServices, default_services
from shared.jobs.sweep_timer import SweepResult, TenantSweep, run_sweep_timer
from shared.logs import run_context
from shared.storage import RunRecord

__all__ = [
    "HANDOVER_LIMIT",
    "INVALID_JOB",
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

logger = logging.getLogger(DISPATCH_LOGGER)

INVALID_JOB = "invalid-message"  # the job name of run records of unparseable messages


async def handle_queue_message(
    body: bytes | str,
    *,
    message_id: str = "",
    dequeue_count: int = 1,
    instance: JobServices | None = None,
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
        waited = (utc_now() - inserted_at).total_seconds()
        telemetry.record("daemon.queue_age", max(0.0, waited))
    try:
        instance = instance or default_services()
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
        problem = f"the message cannot be parsed: {cause_of(exc)}"
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
        return await deliver(instance, message, body, message_id, dequeue_count, limit, jobs)


async def _record_invalid(instance: JobServices, message_id: str, problem: str) -> None:
    now = utc_now()
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
