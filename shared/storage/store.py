"""The state store: checkpoints, run records and both ledgers behind one object.

:class:`StateStore` is the union of the per-concept parts (each a :class:`StoreTables`
subclass in its own module): :class:`CheckpointStore`, :class:`RunStore`,
:class:`DoneLedger` and :class:`DeliveryStore`. It adds only :meth:`StateStore.from_env`.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.storage.checkpoints import CheckpointStore
from shared.storage.connection import DEFAULT_CONNECTION, storage_connection
from shared.storage.deliveries import DeliveryStore
from shared.storage.ledger import DoneLedger
from shared.storage.runs import RunStore

__all__ = ["StateStore"]


class StateStore(CheckpointStore, RunStore, DoneLedger, DeliveryStore):
    """Checkpoints, run records, the idempotency ledger and the attempt ledger of queue
    messages (async API over azure-data-tables).

    One instance may be used from any event loop: the SDK client is synchronous and every call
    runs in a worker thread.
    """

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        connection: str = DEFAULT_CONNECTION,
        table_prefix: str = "daemon",
    ) -> StateStore:
        return cls(storage_connection(env, connection).table_service(), table_prefix=table_prefix)
