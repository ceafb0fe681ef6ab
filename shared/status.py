"""``python -m shared status``: what the daemon has been doing, from its own durable state.

It reads (never writes) the storage account on ``AzureWebJobsStorage`` and, in the keyvault-*
modes, the certificate's metadata in Key Vault:

- the latest run records per job and tenant (status, counts, error);
- the jobs queue: approximate length and the age of its oldest visible message;
- the poison queue's depth (a message there needs a fix, then ``requeue-poison``);
- per tenant, the sweep checkpoint's age and its delta link's age against the 7-day expiry of
  directory delta tokens (https://learn.microsoft.com/graph/delta-query-overview: "the
  identity and relationship resources ... tokens ... expire after 7 days"), after which the
  sweep must rescan the whole directory;
- the certificate's days to expiry.

Anything that needs an operator is listed under ``attention``; ``status`` exits 1 when that
list is not empty, so a monitoring script can run it as it is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import DaemonError
from shared.settings import Settings, load_settings
from shared.storage import StateStore, storage_connection

__all__ = [
    "DELTA_LINK_LIFETIME",
    "JOBS",
    "QueueStatus",
    "StatusReport",
    "collect_status",
]

logger = logging.getLogger(__name__)

JOBS = ("provision", "operations", "sweep")
DELTA_LINK_LIFETIME = dt.timedelta(days=7)
DELTA_LINK_WARNING = dt.timedelta(days=6)  # a sweep that stopped for six days: one day left
CERTIFICATE_WARNING_DAYS = 14.0
STORAGE_TIMEOUT_SECONDS = 5
_FAILED_STATUSES = frozenset({"failed", "poisoned", "aborted", "interrupted", "retrying"})
_POISON_SUFFIX = "-poison"


@dataclass
class QueueStatus:
    name: str
    length: int | None = None
    oldest_age_seconds: float | None = None
    error: str | None = None


@dataclass
class StatusReport:
    now: str
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    queue: QueueStatus | None = None
    poison: QueueStatus | None = None
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    certificate: dict[str, Any] | None = None
    attention: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def render(self) -> str:
        lines = [f"status at {self.now}"]
        for name, queue in (("queue", self.queue), ("poison", self.poison)):
            if queue is None:
                continue
            if queue.error:
                lines.append(f"{name} {queue.name}: unreadable: {queue.error}")
                continue
            age = (
                f", oldest {_duration(queue.oldest_age_seconds)} old"
                if queue.oldest_age_seconds is not None
                else ""
            )
            lines.append(f"{name} {queue.name}: {queue.length} message(s){age}")
        for tenant, checkpoint in self.checkpoints.items():
            if checkpoint.get("error"):
                lines.append(f"sweep checkpoint {tenant}: unreadable: {checkpoint['error']}")
            elif checkpoint.get("updated_at") is None:
                lines.append(f"sweep checkpoint {tenant}: none yet (the first sweep scans all)")
            else:
                lines.append(
                    f"sweep checkpoint {tenant}: written {_duration(checkpoint['age_seconds'])} "
                    f"ago, delta link {'present' if checkpoint['has_delta_link'] else 'absent'}"
                )
        if self.certificate is not None:
            if self.certificate.get("error"):
                lines.append(f"certificate: unreadable: {self.certificate['error']}")
            else:
                lines.append(
                    f"certificate {self.certificate['name']} version "
                    f"{self.certificate['version']}: {self.certificate['days_to_expiry']:.0f} "
                    "days to expiry"
                )
        for key, runs in self.runs.items():
            if not runs:
                lines.append(f"runs {key}: none recorded")
                continue
            lines.append(f"runs {key}:")
            for run in runs:
                error = f" — {run['error'][:160]}" if run.get("error") else ""
                lines.append(
                    f"  {run['started_at']} {run['status']}: planned {run['planned']}, applied "
                    f"{run['applied']}, failed {run['failed']}, throttled {run['throttled']} "
                    f"({run['correlation_id']}){error}"
                )
        if self.attention:
            lines.append("attention:")
            lines.extend(f"  - {item}" for item in self.attention)
        else:
            lines.append("nothing needs attention")
        return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _queue_status(env: Mapping[str, str], name: str, now: dt.datetime) -> QueueStatus:
    status = QueueStatus(name)
    try:
        client = _queue_client(env, name)
        try:
            if not _queue_exists(client):
                status.length = 0
                return status
            status.length = int(client.get_queue_properties().approximate_message_count or 0)
            peeked = list(client.peek_messages(max_messages=32))
            inserted = [_utc(m.inserted_on) for m in peeked if m.inserted_on is not None]
            if inserted:
                status.oldest_age_seconds = max(0.0, (now - min(inserted)).total_seconds())
        finally:
            client.close()
    except DaemonError as exc:
        status.error = str(exc)
    except Exception as exc:  # the SDK's errors: name the type, never a connection string
        status.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return status


def _queue_client(env: Mapping[str, str], name: str) -> Any:
    """A queue client that gives up fast: status is read by people and scripts waiting on it
    (the SDK's default retries take minutes against an unreachable account)."""
    from azure.storage.queue import LinearRetry, QueueClient

    connection = storage_connection(env)
    if connection.queue_endpoint is None:
        connection.queue_client(name)  # raises the SettingError that names what is missing
    return QueueClient(
        account_url=str(connection.queue_endpoint),
        queue_name=name,
        credential=connection.credential,
        # the storage SDK's default retry waits 15 s, then 45 s
        retry_policy=LinearRetry(backoff=1, random_jitter_range=0, retry_total=1),
        connection_timeout=STORAGE_TIMEOUT_SECONDS,
        read_timeout=STORAGE_TIMEOUT_SECONDS,
    )


def _queue_exists(client: Any) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


async def _checkpoint_status(
    store: StateStore, tenant: str, now: dt.datetime
) -> tuple[dict[str, Any], list[str]]:
    attention: list[str] = []
    try:
        checkpoint = await store.get_checkpoint("sweep", tenant)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}, [
            f"sweep checkpoint of {tenant} unreadable"
        ]
    if checkpoint is None or checkpoint.updated_at is None:
        return {"updated_at": None, "has_delta_link": False}, attention
    age = now - _utc(checkpoint.updated_at)
    entry = {
        "updated_at": _utc(checkpoint.updated_at).isoformat(),
        "age_seconds": round(age.total_seconds(), 1),
        "has_delta_link": bool(checkpoint.delta_link),
        "delta_link_expires_in_seconds": (
            round((DELTA_LINK_LIFETIME - age).total_seconds(), 1) if checkpoint.delta_link else None
        ),
    }
    if checkpoint.delta_link and age >= DELTA_LINK_LIFETIME:
        attention.append(
            f"sweep of {tenant}: the delta link is {age.days} days old and has expired; the "
            "next sweep rescans the whole directory (is the timer running?)"
        )
    elif checkpoint.delta_link and age >= DELTA_LINK_WARNING:
        attention.append(
            f"sweep of {tenant}: the delta link is {age.days} days old and expires after 7 "
            "(is the timer running?)"
        )
    return entry, attention


async def _certificate_status(settings: Settings, now: dt.datetime) -> dict[str, Any] | None:
    if not settings.uses_key_vault or settings.signing_mode is None:
        return None
    from shared.auth.credentials import create_app_credential

    credential = create_app_credential(settings)
    try:
        info = await asyncio.to_thread(credential.certificate)
    except DaemonError as exc:
        return {"error": str(exc)}
    finally:
        credential.close()
    if info is None:
        return None
    return {
        "name": info.name,
        "version": info.version,
        "not_after": info.not_after.isoformat(),
        "days_to_expiry": round(info.days_to_expiry(now), 1),
    }


async def collect_status(
    env: Mapping[str, str],
    *,
    now: dt.datetime | None = None,
    runs_per_job: int = 5,
    certificate: bool = True,
    store: StateStore | None = None,
) -> StatusReport:
    """Read the daemon's state. Raises :class:`~shared.errors.SettingError` for settings it
    cannot even start from; every unreadable part is reported in place."""
    settings = load_settings(env)
    now = now or dt.datetime.now(dt.timezone.utc)
    report = StatusReport(now=now.isoformat())
    report.queue = await asyncio.to_thread(_queue_status, env, settings.jobs_queue, now)
    report.poison = await asyncio.to_thread(
        _queue_status, env, settings.jobs_queue + _POISON_SUFFIX, now
    )
    if report.poison.length:
        report.attention.append(
            f"{report.poison.length} message(s) in {report.poison.name}: read their cause in the "
            "run records or the log, fix it, then `python -m shared requeue-poison`"
        )
    for queue in (report.queue, report.poison):
        if queue.error:
            report.attention.append(f"queue {queue.name} unreadable: {queue.error}")
    own_store = store is None
    store = store or StateStore.from_env(env)
    try:
        for tenant in settings.allowed_tenants:
            entry, attention = await _checkpoint_status(store, tenant, now)
            report.checkpoints[tenant] = entry
            report.attention.extend(attention)
            for job in JOBS:
                key = f"{job} {tenant}"
                try:
                    records = await store.list_runs(job, tenant=tenant, limit=runs_per_job)
                except Exception as exc:
                    report.attention.append(
                        f"run records of {key} unreadable: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}"
                    )
                    continue
                report.runs[key] = [_run_dict(r) for r in records]
                if records and _status_text(records[0].status) in _FAILED_STATUSES:
                    report.attention.append(
                        f"the latest {job} run for {tenant} ({records[0].correlation_id}) "
                        f"ended {records[0].status}: {(records[0].error or '')[:200]}"
                    )
    finally:
        if own_store:
            store.close()
    if certificate:
        report.certificate = await _certificate_status(settings, now)
        if report.certificate is not None:
            if report.certificate.get("error"):
                report.attention.append(f"certificate unreadable: {report.certificate['error']}")
            elif report.certificate["days_to_expiry"] < CERTIFICATE_WARNING_DAYS:
                report.attention.append(
                    f"certificate expires in {report.certificate['days_to_expiry']:.0f} days: "
                    "add a new version in Key Vault and register it on the app"
                )
    return report


def _status_text(status: Any) -> str:
    return str(getattr(status, "value", status))


def _run_dict(record: Any) -> dict[str, Any]:
    return {
        "correlation_id": record.correlation_id,
        "started_at": _utc(record.started_at).isoformat(timespec="seconds"),
        "ended_at": _utc(record.ended_at).isoformat(timespec="seconds")
        if record.ended_at
        else None,
        "status": _status_text(record.status),
        "planned": record.planned,
        "applied": record.applied,
        "failed": record.failed,
        "throttled": record.throttled,
        "error": record.error,
        "dry_run": record.dry_run,
    }
