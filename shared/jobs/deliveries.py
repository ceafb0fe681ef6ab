"""The attempt ledger's decisions: run this delivery, hand it over to a fresh copy, refuse
it (real failures exhausted) or complete it (an earlier delivery did).

Why (the host counts crashed deliveries towards poison) and the outcome of each decision
are in the docstring of ``dispatch.py``. :class:`DeliveryHistory` reads the ledger (pure);
:func:`deliver` acts on its decision.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import RetryableJobError, StateStoreError
from shared.jobs.base import Job, RunStatus, RunSummary
from shared.jobs.envelope import JobMessage
from shared.jobs.records import DISPATCH_LOGGER, run_record, summary_of, utc_now
from shared.jobs.run import run_job
from shared.jobs.services import JobServices
from shared.storage import DeliveryLedger, RunRecord, StateStore

__all__ = [
    "HANDOVER_HIDDEN_SECONDS",
    "HANDOVER_LIMIT",
    "Decision",
    "DeliveryHistory",
    "deliver",
]

logger = logging.getLogger(DISPATCH_LOGGER)

HANDOVER_LIMIT = 3  # hand over at most until HANDOVER_LIMIT x maxDequeueCount deliveries
HANDOVER_HIDDEN_SECONDS = 30  # a fresh copy stays hidden until its ledger row is written

_FAILURE_VALUES = frozenset(s.value for s in RunStatus if s.is_failure)
_COMPLETING_VALUES = frozenset(
    s.value
    for s in RunStatus
    if s.completes and s not in (RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.PLANNED)
)


class Decision(enum.Enum):
    """What to do with this delivery, from :meth:`DeliveryHistory.decide`."""

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
        """The history before ``delivery`` (this copy's attempts plus what was carried)."""
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
        """Done beats exhausted beats hand-over; otherwise run."""
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


async def deliver(
    instance: JobServices,
    message: JobMessage,
    body: bytes | str,
    message_id: str,
    delivery: int,
    limit: int,
    jobs: Mapping[str, Job],
) -> RunSummary:
    """One delivery of a queued message (``delivery`` = its dequeue count, ``limit`` =
    maxDequeueCount): earlier deliveries that died are closed as ``interrupted``, then the
    ledger's decision is carried out; :data:`Decision.RUN` runs the job."""
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
        summary = summary_of(message)
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
                ended_at=utc_now(),
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
    instance: JobServices,
    message: JobMessage,
    body: bytes | str,
    message_id: str,
    history: DeliveryHistory,
    limit: int,
) -> RunSummary:
    """Send a fresh copy carrying the failure and delivery counts, complete this one."""
    store = instance.store
    started = utc_now()
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
    summary = summary_of(message)
    summary.status = RunStatus.REQUEUED
    summary.cause = (
        f"delivery {history.delivery} of {limit} after {history.interrupted} interrupted "
        f"deliver{'y' if history.interrupted == 1 else 'ies'}: handed over to message "
        f"{fresh.id} with {history.failures} real failure(s) carried"
    )
    logger.warning("%s", summary.line())
    await store.record_run(run_record(message, summary, started))
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
    """Record and raise: the message failed maxDequeueCount times already."""
    started = utc_now()
    summary = summary_of(message)
    last = history.delivery >= limit
    summary.status = RunStatus.POISONED if last else RunStatus.RETRYING
    summary.cause = (
        f"it already failed {history.failures} time(s) (maxDequeueCount {limit}), last: "
        f"{history.last_cause or 'unknown'}; not run again"
        + ("; the host moves it to poison" if last else "; waiting for the host to poison it")
    )
    logger.error("%s", summary.line())
    await store.record_run(run_record(message, summary, started))
    await store.record_delivery(  # the ledger keeps the job's own last cause
        message.correlation_id,
        message_id,
        history.delivery,
        started_at=started,
        status=summary.status.value,
        cause=history.last_cause,
    )
    raise RetryableJobError(summary.cause)
