"""The idempotency ledger: done-marks for work that must happen once, in ``<prefix>ledger``.

``mark_done(key)`` inserts an entity and returns False when the key was already there (the
insert fails with 409 Conflict), so a message delivered twice changes nothing the second
time. Keys are spread over 256 partitions by a hash prefix: one partition serves about
2,000 entities a second
(https://learn.microsoft.com/en-us/azure/storage/tables/scalability-targets).
"""

from __future__ import annotations

import hashlib
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.storage.entities import MAX_ERROR_CHARS, MAX_PROPERTY_UNITS, now, sanitize_key
from shared.storage.tables import StoreTables

__all__ = ["DoneLedger"]


class DoneLedger(StoreTables):
    """Mark work done once, ask whether it is done, forget a mark."""

    async def mark_done(self, key: str, *, note: str | None = None) -> bool:
        """Record ``key`` as done: True the first time, False if it was already done."""
        partition, row = _ledger_keys(key)
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": row,
            "Key": key[:MAX_PROPERTY_UNITS],
            "DoneAt": now(),
        }
        if note is not None:
            entity["Note"] = note[:MAX_ERROR_CHARS]

        def call() -> bool:
            try:
                self._table(self.ledger_table).create_entity(entity)
            except ResourceExistsError:
                return False
            return True

        return await self._call(call)

    async def is_done(self, key: str) -> bool:
        partition, row = _ledger_keys(key)

        def call() -> bool:
            try:
                self._table(self.ledger_table).get_entity(partition, row, select=["RowKey"])
            except ResourceNotFoundError:
                return False
            return True

        return await self._call(call)

    async def clear_done(self, key: str) -> None:
        """Forget ``key`` (for work that was marked done but then failed to complete)."""
        partition, row = _ledger_keys(key)

        def call() -> None:
            self._table(self.ledger_table).delete_entity(partition, row)

        await self._call(call)


def _ledger_keys(key: str) -> tuple[str, str]:
    if not key:
        raise ValueError("an idempotency key must not be empty")
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:2], sanitize_key(key)
