"""What the queue and timer entry points need from the function instance, and the narrow
context they build from it for each job.

:class:`JobServices` names exactly the members of :class:`shared.instance.Instance` that
``dispatch.py``, ``run.py``, ``deliveries.py`` and ``sweep_timer.py`` use; the instance is
one structurally, and a test may pass any other object that has them. A job never sees it:
:func:`job_context` hands the job only its settings, engine and client factories for the
message's tenant, the idempotency ledger and the clock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from shared.jobs.context import JobContext, JobSettings
from shared.jobs.envelope import JobMessage

if TYPE_CHECKING:  # annotations only: building them is the instance's business
    from shared.settings import Settings
    from shared.storage import JobQueue, StateStore
    from shared.webapi import ApiClient, BatchEngine

__all__ = ["JobServices", "default_services", "job_context"]


class JobServices(Protocol):
    """The per-instance objects the entry points use (an ``Instance`` provides them)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> StateStore: ...

    @property
    def max_dequeue_count(self) -> int: ...

    @property
    def token_requests(self) -> int: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def job_queue(self) -> JobQueue: ...

    def api_client(self, tenant: str | None = None) -> ApiClient: ...

    def batch_engine(self, tenant: str | None = None) -> BatchEngine: ...


def default_services() -> JobServices:
    """The process-wide instance, built on first use from the app settings."""
    from shared.instance import current_instance

    return current_instance()


def job_context(services: JobServices, message: JobMessage) -> JobContext:
    """The narrow context of one run: what a job may use, for the message's tenant."""
    return JobContext(
        message=message,
        settings=JobSettings.from_settings(services.settings),
        engines=functools.partial(services.batch_engine, message.tenant),
        clients=functools.partial(services.api_client, message.tenant),
        store=services.store,
        clock=services.clock,
    )
