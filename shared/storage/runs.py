"""Run records: one entity per run of a job for a tenant, in ``<prefix>runs``, newest first.

PartitionKey is the job; the RowKey starts with the start time inverted (the service returns
a partition's entities in RowKey order, ascending), then the tenant and the correlation id,
so listing a job's runs reads the newest first without sorting.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import StateStoreError
from shared.storage.entities import MAX_ERROR_CHARS, int64, int_value, sanitize_key, utc
from shared.storage.records import RunRecord
from shared.storage.tables import StoreTables

__all__ = ["RunStore"]

_EPOCH_MAX_US = 10**19 - 1  # row keys sort ascending: an inverted time puts newest first


class RunStore(StoreTables):
    """Record runs and list a job's recent runs."""

    async def record_run(self, record: RunRecord) -> None:
        """Insert or replace the record of one run (same job, tenant, start, correlation id)."""
        entity = _run_entity(record)

        def call() -> None:
            self._table(self.runs_table).upsert_entity(entity, mode=UpdateMode.REPLACE)

        await self._call(call)

    async def list_runs(
        self, job: str, *, tenant: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """The job's runs, newest first (optionally for one tenant), at most ``limit``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")

        def call() -> list[RunRecord]:
            table = self._table(self.runs_table)
            parameters: dict[str, Any] = {"pk": sanitize_key(job)}
            query = "PartitionKey eq @pk"
            if tenant is not None:
                query += " and Tenant eq @tenant"
                parameters["tenant"] = tenant
            records: list[RunRecord] = []
            entities: Iterator[Any] = iter(
                table.query_entities(
                    query, parameters=parameters, results_per_page=min(limit, 1000)
                )
            )
            for entity in entities:
                records.append(_run_from_entity(entity))
                if len(records) >= limit:
                    break
            return records

        return await self._call(call)


def _run_row_key(record: RunRecord) -> str:
    started = record.started_at
    if started.tzinfo is None:
        raise ValueError("RunRecord.started_at must be timezone-aware")
    micros = int(started.timestamp() * 1_000_000)
    return f"{_EPOCH_MAX_US - micros:019d}_{sanitize_key(record.tenant)}_" + sanitize_key(
        record.correlation_id
    )


def _run_entity(record: RunRecord) -> dict[str, Any]:
    error = record.error
    if error is not None and len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS] + "… (truncated)"
    entity: dict[str, Any] = {
        "PartitionKey": sanitize_key(record.job),
        "RowKey": _run_row_key(record),
        "Job": record.job,
        "Tenant": record.tenant,
        "CorrelationId": record.correlation_id,
        "StartedAt": record.started_at,
        "Status": record.status,
        "Planned": int64(record.planned),
        "Applied": int64(record.applied),
        "Failed": int64(record.failed),
        "Throttled": int64(record.throttled),
        "TokenRequests": int64(record.token_requests),
        "DryRun": record.dry_run,
    }
    if record.ended_at is not None:
        entity["EndedAt"] = record.ended_at
    if error is not None:
        entity["Error"] = error
    return entity


def _run_from_entity(entity: Mapping[str, Any]) -> RunRecord:
    started = utc(entity.get("StartedAt"))
    if started is None:
        raise StateStoreError(f"run record {entity.get('RowKey')!r} has no StartedAt")
    return RunRecord(
        job=str(entity.get("Job", "")),
        tenant=str(entity.get("Tenant", "")),
        correlation_id=str(entity.get("CorrelationId", "")),
        started_at=started,
        ended_at=utc(entity.get("EndedAt")),
        status=str(entity.get("Status", "")),
        planned=int_value(entity.get("Planned")),
        applied=int_value(entity.get("Applied")),
        failed=int_value(entity.get("Failed")),
        throttled=int_value(entity.get("Throttled")),
        token_requests=int_value(entity.get("TokenRequests")),
        error=entity.get("Error"),
        dry_run=bool(entity.get("DryRun", False)),
    )
