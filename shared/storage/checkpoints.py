"""Checkpoints: where each job stands for each tenant, in ``<prefix>checkpoints``.

One entity per (job, tenant): PartitionKey the job, RowKey the tenant (both sanitized), with
the delta link, phase, cursor, a small JSON ``data`` object and the time it was written.
Writes are optimistic: the ETag read with the checkpoint must still match
(https://learn.microsoft.com/en-us/rest/api/storageservices/update-entity2, ``If-Match``),
otherwise :class:`~shared.errors.StateConflictError` — another run wrote it; read it again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, UpdateMode

from shared.errors import StateConflictError
from shared.storage.entities import get_text, now, put_text, sanitize_key, utc
from shared.storage.records import Checkpoint
from shared.storage.tables import StoreTables

__all__ = ["CheckpointStore"]


class CheckpointStore(StoreTables):
    """Read, write (optimistically) and delete checkpoints."""

    async def get_checkpoint(self, job: str, tenant: str) -> Checkpoint | None:
        def call() -> Checkpoint | None:
            try:
                entity = self._table(self.checkpoints_table).get_entity(
                    sanitize_key(job), sanitize_key(tenant)
                )
            except ResourceNotFoundError:
                return None
            return _checkpoint_from_entity(job, tenant, entity)

        return await self._call(call)

    async def put_checkpoint(self, checkpoint: Checkpoint, *, force: bool = False) -> Checkpoint:
        """Write ``checkpoint`` and return it with its new ETag and time.

        Without an ETag the checkpoint must not exist yet; with one, the stored checkpoint
        must still carry it. Otherwise :class:`StateConflictError` (someone else wrote it:
        read again and redo the work). ``force`` writes unconditionally.
        """
        updated_at = now()
        entity = _checkpoint_entity(checkpoint, updated_at)
        what = f"checkpoint of job {checkpoint.job!r} for tenant {checkpoint.tenant!r}"

        def call() -> str | None:
            table = self._table(self.checkpoints_table)
            try:
                result = _write(table, entity, etag=checkpoint.etag, force=force)
            except ResourceExistsError as exc:
                raise StateConflictError(
                    f"{what} already exists: another run wrote it first; read it and retry"
                ) from exc
            except ResourceModifiedError as exc:
                raise StateConflictError(
                    f"{what} changed since it was read (ETag mismatch): another run wrote it; "
                    "read it again and retry"
                ) from exc
            except ResourceNotFoundError as exc:
                raise StateConflictError(
                    f"{what} was deleted since it was read; read it again and retry"
                ) from exc
            etag = result.get("etag")
            return str(etag) if etag is not None else None

        etag = await self._call(call)
        return dataclasses.replace(checkpoint, updated_at=updated_at, etag=etag)

    async def delete_checkpoint(self, job: str, tenant: str) -> None:
        def call() -> None:
            self._table(self.checkpoints_table).delete_entity(
                sanitize_key(job), sanitize_key(tenant)
            )

        await self._call(call)


def _write(
    table: TableClient, entity: Mapping[str, Any], *, etag: str | None, force: bool
) -> Mapping[str, Any]:
    """Replace unconditionally (``force``), insert (no ETag: it must not exist yet), or
    replace only while the stored ETag is still ``etag``."""
    if force:
        return table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    if etag is None:
        return table.create_entity(entity)
    return table.update_entity(
        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
    )


def _checkpoint_entity(checkpoint: Checkpoint, updated_at: datetime) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": sanitize_key(checkpoint.job),
        "RowKey": sanitize_key(checkpoint.tenant),
        "Job": checkpoint.job,
        "Tenant": checkpoint.tenant,
        "UpdatedAt": updated_at,
    }
    if checkpoint.phase is not None:
        entity["Phase"] = checkpoint.phase
    put_text(entity, "DeltaLink", checkpoint.delta_link)
    put_text(entity, "Cursor", checkpoint.cursor)
    if checkpoint.data:
        put_text(entity, "Data", json.dumps(checkpoint.data, separators=(",", ":")))
    return entity


def _checkpoint_from_entity(job: str, tenant: str, entity: TableEntity) -> Checkpoint:
    raw_data = get_text(entity, "Data")
    return Checkpoint(
        job=job,
        tenant=tenant,
        delta_link=get_text(entity, "DeltaLink"),
        phase=entity.get("Phase"),
        cursor=get_text(entity, "Cursor"),
        data=json.loads(raw_data) if raw_data else {},
        updated_at=utc(entity.get("UpdatedAt")),
        etag=entity.metadata.get("etag"),
    )
