"""Where the fleet budget's buckets live: Table storage on ``AzureWebJobsStorage``.

**Entity layout.** Table ``<prefix>budget`` (default ``daemonbudget``), one entity per
(app, tenant): PartitionKey = the app (client id, or the managed identity's), RowKey = the
tenant (lower case), both sanitized like the state store's keys. Properties: ``Tokens``
(writes left in the bucket, a double), ``Stamp`` (wall-clock seconds of the last refill),
``Rate`` and ``Capacity`` (what the writer configured; informational: every instance refills
with its own settings, so instances with different settings cannot widen each other's).

Every write is conditional on the ETag read (optimistic concurrency,
https://learn.microsoft.com/rest/api/storageservices/update-entity2): a write that lost to
another instance raises :class:`FleetConflictError` and the caller reads again. The bucket
arithmetic is in :mod:`shared.webapi.fleet_bucket`, the leasing in :mod:`shared.webapi.fleet`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.errors import FleetConflictError, StateStoreError
from shared.storage import StorageConnection

__all__ = ["BudgetTable", "TableBudgetStore"]


class BudgetTable(Protocol):
    """Where the bucket entities live (synchronous; called in a worker thread)."""

    def read(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        """The entity and its ETag, or None when there is none."""

    def create(self, entity: Mapping[str, Any]) -> str:
        """Insert; :class:`FleetConflictError` when it exists. Returns the new ETag."""

    def update(self, entity: Mapping[str, Any], etag: str) -> str:
        """Replace if the ETag still matches, else :class:`FleetConflictError`."""


class TableBudgetStore:
    """:class:`BudgetTable` on azure-data-tables, with short timeouts and few SDK retries
    (a lease that is slow is worth less than pacing alone for a while)."""

    def __init__(self, table: TableClient, service: TableServiceClient | None = None) -> None:
        self._table = table
        self._service = service
        self._created = False
        self._lock = threading.Lock()

    @classmethod
    def from_connection(
        cls,
        connection: StorageConnection,
        *,
        table_name: str = "daemonbudget",
        timeout_seconds: float = 2.0,
    ) -> TableBudgetStore:
        endpoint = connection.table_endpoint
        if endpoint is None:
            raise StateStoreError(
                f"{connection.setting} gives no table endpoint for the fleet budget"
            )
        kwargs: dict[str, Any] = {
            "retry_total": 0,  # no SDK retries: a failed lease falls back, retried later
            "connection_timeout": timeout_seconds,
            "read_timeout": timeout_seconds,
        }
        service = TableServiceClient(endpoint=endpoint, credential=connection.credential, **kwargs)
        return cls(service.get_table_client(table_name), service)

    def _ensure(self) -> None:
        with self._lock:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    self._table.create_table()
                self._created = True

    def read(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        self._ensure()
        try:
            entity = self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return dict(entity), str(entity.metadata.get("etag"))

    def create(self, entity: Mapping[str, Any]) -> str:
        self._ensure()
        try:
            result = self._table.create_entity(dict(entity))
        except ResourceExistsError as exc:
            raise FleetConflictError("the budget entity was created by another instance") from exc
        return str(result.get("etag"))

    def update(self, entity: Mapping[str, Any], etag: str) -> str:
        try:
            result = self._table.update_entity(
                dict(entity),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise FleetConflictError("the budget entity changed since it was read") from exc
        return str(result.get("etag"))

    def close(self) -> None:
        self._table.close()
        if self._service is not None:
            self._service.close()
