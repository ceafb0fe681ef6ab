"""How a run is written down: its summary, its run record, the cause of a failure, the log
level of its summary line, and which exceptions mean "may succeed later".

Shared by the queue entry point (``dispatch.py``), one run (``run.py``), the delivery
decisions (``deliveries.py``) and the sweep timer (``sweep_timer.py``).
"""

from __future__ import annotations

import datetime as dt
import logging

from shared.errors import (
    ApiError,
    ConfigurationError,
    CredentialError,
    RetryableJobError,
    StateStoreError,
)
from shared.jobs.base import RunStatus, RunSummary
from shared.jobs.envelope import JobMessage
from shared.storage import RunRecord

__all__ = [
    "DISPATCH_LOGGER",
    "RETRYABLE",
    "cause_of",
    "level_of",
    "run_record",
    "summary_of",
    "utc_now",
]

# The one log category of the queue and timer entry points (their modules share it, so the
# summary lines keep the category they always had).
DISPATCH_LOGGER = "shared.jobs.dispatch"

# Failures that may go away (outage, throttling, a setting or credential being fixed): the
# message is redelivered, and poisoned after maxDequeueCount real failures.
RETRYABLE: tuple[type[Exception], ...] = (
    ApiError,
    CredentialError,
    ConfigurationError,
    StateStoreError,
    RetryableJobError,
)

_MAX_CAUSE_CHARS = 1_000

_LEVELS = {
    RunStatus.SUCCEEDED: logging.INFO,
    RunStatus.DRY_RUN: logging.INFO,
    RunStatus.COMPLETED_WITH_ERRORS: logging.WARNING,
    RunStatus.RETRYING: logging.WARNING,
    RunStatus.INTERRUPTED: logging.WARNING,
}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def cause_of(exc: BaseException) -> str:
    """``<type>: <message>`` on one line, cut at 1,000 characters (for records and logs)."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > _MAX_CAUSE_CHARS:
        text = text[:_MAX_CAUSE_CHARS] + "…"
    return f"{type(exc).__name__}: {text}"


def level_of(status: RunStatus) -> int:
    """The log level of a run's summary line: ERROR unless the status is expected."""
    return _LEVELS.get(status, logging.ERROR)


def summary_of(message: JobMessage) -> RunSummary:
    return RunSummary(message.job, message.tenant, message.correlation_id, message.dry_run)


def run_record(
    message: JobMessage, summary: RunSummary, started: dt.datetime, *, ended: bool = True
) -> RunRecord:
    """The run record of ``summary``; ``error`` joins its problems, errors and cause."""
    causes = [summary.cause] if summary.cause else []
    error = "; ".join([*summary.problems, *summary.errors, *causes])
    return RunRecord(
        message.job,
        message.tenant,
        message.correlation_id,
        started,
        ended_at=utc_now() if ended else None,
        status=summary.status.value,
        planned=summary.planned,
        applied=summary.applied,
        failed=summary.failed + len(summary.problems),
        throttled=summary.throttled,
        token_requests=summary.token_requests,
        error=error or None,
        dry_run=message.dry_run,
    )
