"""The attempt ledger of queue messages, in ``<prefix>deliveries``.

One entity per (correlation id, message id): when each delivery started and how it ended
(``D001Start``, ``D001Status``, ``D001Cause``, ... numbered by the host's dequeue count),
plus the failures and deliveries carried over from an earlier copy of the same message
(``Carried*``). Writes merge into the entity, so concurrent writers of different deliveries
never overwrite each other. It tells "the host redelivered after a crash" from "the job
failed" (see ``shared/jobs/dispatch.py``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode

from shared.storage.entities import MAX_ERROR_CHARS, int64, int_value, sanitize_key, utc
from shared.storage.records import DeliveryAttempt, DeliveryLedger
from shared.storage.tables import StoreTables

__all__ = ["MAX_LEDGER_DELIVERIES", "DeliveryStore"]

# An entity holds at most 252 of our properties
# (https://learn.microsoft.com/en-us/rest/api/storageservices/understanding-the-table-service-data-model):
# 3 properties per delivery, with room for the carried-over ones.
MAX_LEDGER_DELIVERIES = 60  # per copy


class DeliveryStore(StoreTables):
    """Read a message's attempt ledger; record a delivery's start and end; carry counts over."""

    async def get_deliveries(self, correlation_id: str, message_id: str) -> DeliveryLedger:
        """The attempt ledger of one message (empty when it has none yet)."""
        partition, row = _delivery_keys(correlation_id, message_id)

        def call() -> DeliveryLedger:
            try:
                entity = self._table(self.deliveries_table).get_entity(partition, row)
            except ResourceNotFoundError:
                return DeliveryLedger(correlation_id, message_id)
            return _ledger_from_entity(correlation_id, message_id, entity)

        return await self._call(call)

    async def record_delivery(
        self,
        correlation_id: str,
        message_id: str,
        delivery: int,
        *,
        started_at: datetime | None = None,
        status: str | None = None,
        cause: str | None = None,
    ) -> None:
        """Record the start (``started_at``) and/or the end (``status``, ``cause``) of
        delivery number ``delivery`` (the host's dequeue count). Merged into the entity, so
        concurrent writers of other deliveries never overwrite each other. Deliveries after
        the 60th of one copy are not recorded (an entity holds at most 252 properties)."""
        if delivery < 1:
            raise ValueError("delivery numbers start at 1 (the host's dequeue count)")
        if delivery > MAX_LEDGER_DELIVERIES:
            return
        partition, row = _delivery_keys(correlation_id, message_id)
        entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row}
        prefix = f"D{delivery:03d}"
        if started_at is not None:
            entity[f"{prefix}Start"] = started_at
        if status is not None:
            entity[f"{prefix}Status"] = status
        if cause is not None:
            entity[f"{prefix}Cause"] = cause[:MAX_ERROR_CHARS]
        await self._merge(entity)

    async def carry_deliveries(
        self,
        correlation_id: str,
        message_id: str,
        *,
        failures: int,
        deliveries: int,
        carried_from: str,
        cause: str | None = None,
    ) -> None:
        """Start the ledger of a fresh copy ``message_id`` with an earlier copy's counts."""
        partition, row = _delivery_keys(correlation_id, message_id)
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": row,
            "CarriedFailures": int64(failures),
            "CarriedDeliveries": int64(deliveries),
            "CarriedFrom": carried_from,
        }
        if cause is not None:
            entity["CarriedCause"] = cause[:MAX_ERROR_CHARS]
        await self._merge(entity)

    async def _merge(self, entity: dict[str, Any]) -> None:
        def call() -> None:
            self._table(self.deliveries_table).upsert_entity(entity, mode=UpdateMode.MERGE)

        await self._call(call)


def _delivery_keys(correlation_id: str, message_id: str) -> tuple[str, str]:
    if not correlation_id or not message_id:
        raise ValueError("a delivery needs a correlation id and a message id")
    return sanitize_key(correlation_id), sanitize_key(message_id)


def _ledger_from_entity(
    correlation_id: str, message_id: str, entity: TableEntity
) -> DeliveryLedger:
    attempts: dict[int, DeliveryAttempt] = {}
    for name in entity:
        match = re.fullmatch(r"D(\d{3})Start", name)
        if match is None:
            continue
        number = int(match.group(1))
        attempts[number] = DeliveryAttempt(
            started_at=utc(entity.get(name)),
            status=entity.get(f"D{number:03d}Status"),
            cause=entity.get(f"D{number:03d}Cause"),
        )
    return DeliveryLedger(
        correlation_id,
        message_id,
        attempts=attempts,
        carried_failures=int_value(entity.get("CarriedFailures")),
        carried_deliveries=int_value(entity.get("CarriedDeliveries")),
        carried_from=entity.get("CarriedFrom"),
        carried_cause=entity.get("CarriedCause"),
    )
