"""What a job is given to plan one message: the narrow context.

A job never sees the whole function instance. :class:`JobContext` carries exactly what the
jobs read — the message, the settings they use (:class:`JobSettings`), factories for the
tenant's batch engine and API client, the idempotency ledger and a clock — so a job can be
planned in a unit test with a fake Graph transport and an in-memory ledger. The queue
entry point builds it from the instance (:func:`shared.jobs.services.job_context`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.jobs.envelope import JobMessage

if TYPE_CHECKING:  # only for the annotations: the jobs build no SDK object themselves
    from shared.settings import Settings
    from shared.webapi import ApiClient, BatchEngine

__all__ = ["DoneLedger", "JobContext", "JobSettings"]


class DoneLedger(Protocol):
    """The idempotency ledger (``StateStore`` implements it in Table storage): keys of work
    done by an earlier run, e.g. the sessions of a leaver already revoked."""

    async def is_done(self, key: str) -> bool: ...

    async def mark_done(self, key: str, *, note: str | None = None) -> bool: ...


@dataclass(frozen=True)
class JobSettings:
    """The app settings the jobs and the sweep read (the rest stays with the instance)."""

    user_domain: str | None  # DAEMON_USER_DOMAIN: joiners' UPN suffix
    max_changes_per_run: int  # DAEMON_MAX_CHANGES_PER_RUN: the safety limit
    sweep_chunk_size: int  # DAEMON_SWEEP_CHUNK_SIZE: leavers per fan-out message
    operations_allowed_methods: tuple[str, ...]  # DAEMON_OPERATIONS_ALLOWED_METHODS
    operations_allowed_paths: tuple[str, ...]  # DAEMON_OPERATIONS_ALLOWED_PATHS

    @classmethod
    def from_settings(cls, settings: Settings) -> JobSettings:
        return cls(
            user_domain=settings.user_domain,
            max_changes_per_run=settings.max_changes_per_run,
            sweep_chunk_size=settings.sweep_chunk_size,
            operations_allowed_methods=settings.operations_allowed_methods,
            operations_allowed_paths=settings.operations_allowed_paths,
        )


@dataclass
class JobContext:
    """One run of one job for one tenant.

    ``engines`` and ``clients`` build (or return the cached) batch engine and API client of
    the message's tenant; they are called only when the job reads or writes.
    """

    message: JobMessage
    settings: JobSettings
    engines: Callable[[], BatchEngine]
    clients: Callable[[], ApiClient]
    store: DoneLedger
    clock: Callable[[], float] = time.time

    @property
    def tenant(self) -> str:
        return self.message.tenant

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.message.payload

    def client(self) -> ApiClient:
        return self.clients()

    def engine(self) -> BatchEngine:
        return self.engines()
