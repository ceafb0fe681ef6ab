"""The daemon's durable state, in Azure Table storage on ``AzureWebJobsStorage``, and the
jobs queue.

Four tables, created on first use (names start with ``table_prefix``, default ``daemon``):

- ``<prefix>checkpoints``: where each job stands for each tenant; optimistic (ETag) writes,
  a lost race is :class:`StateConflictError`.
- ``<prefix>runs``: one entity per run (job, tenant, correlation id), newest first.
- ``<prefix>ledger``: the idempotency ledger. ``mark_done(key)`` returns False when the key
  was already there, so a message delivered twice changes nothing the second time.
- ``<prefix>deliveries``: the attempt ledger of queue messages (when each delivery started,
  how it ended, what an earlier copy carried over).

Every storage failure the SDK reports is raised as :class:`StateStoreError` (chained to the
SDK's error, which keeps the status and request id), which the jobs treat as retryable.
:class:`JobQueue` sends job messages the way the Functions host reads them.

Where each concept lives:

- ``connection.py``: :func:`storage_connection` reads the Functions connection settings
  (connection string, ``UseDevelopmentStorage=true``, or identity-based) into a
  :class:`StorageConnection`, which makes the SDK clients.
- ``entities.py``: key sanitising, long text split over properties, typed values.
- ``sdk.py``: SDK calls in a worker thread, SDK errors as :class:`StateStoreError`.
- ``records.py``: :class:`Checkpoint`, :class:`RunRecord`, :class:`DeliveryAttempt`,
  :class:`DeliveryLedger` (plain values).
- ``tables.py``: :class:`~shared.storage.tables.StoreTables`, the table names and clients.
- ``checkpoints.py``, ``runs.py``, ``ledger.py`` (done-marks), ``deliveries.py``: one part
  of the store each, with that table's entity layout.
- ``store.py``: :class:`StateStore`, the parts together.
- ``queue.py``: :class:`JobQueue` and :class:`SentMessage`.

Why :class:`StateStore` inherits its parts instead of delegating to them: every caller (the
jobs, dispatch, status, the instance, the benchmarks) holds one store and calls
``store.get_checkpoint(...)``, ``store.mark_done(...)``, ``store.record_delivery(...)``. A
facade would repeat each of those 11 signatures and docstrings just to forward the call, and
the copies would drift. Here each part is a complete class over the same
:class:`~shared.storage.tables.StoreTables` base (which owns the table clients, the lock and
the thread hop); the parts hold no state of their own and no method name is defined twice,
so the method resolution order has nothing to decide. A part can also be used alone (a test
of the checkpoints needs only ``CheckpointStore(service)``).

The names are imported on first use (PEP 562), and the SDKs (azure-data-tables,
``azure.storage.queue``, ``azure.identity``) only when a table, a queue or an identity
credential is first made: parsing the connection setting at start-up costs no SDK import,
which keeps cold start short.
"""

from __future__ import annotations

from shared.errors import StateConflictError, StateStoreError, StateValueTooLargeError
from shared.lazy import lazy_attributes

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing on the cold path
if TYPE_CHECKING:
    from shared.storage.connection import DEFAULT_CONNECTION, StorageConnection, storage_connection
    from shared.storage.deliveries import MAX_LEDGER_DELIVERIES
    from shared.storage.entities import desanitize_key, sanitize_key
    from shared.storage.queue import JobQueue, SentMessage
    from shared.storage.records import Checkpoint, DeliveryAttempt, DeliveryLedger, RunRecord
    from shared.storage.store import StateStore

_WHERE = {
    "DEFAULT_CONNECTION": "connection",
    "StorageConnection": "connection",
    "storage_connection": "connection",
    "MAX_LEDGER_DELIVERIES": "deliveries",
    "desanitize_key": "entities",
    "sanitize_key": "entities",
    "JobQueue": "queue",
    "SentMessage": "queue",
    "Checkpoint": "records",
    "DeliveryAttempt": "records",
    "DeliveryLedger": "records",
    "RunRecord": "records",
    "StateStore": "store",
}

__all__ = [
    "DEFAULT_CONNECTION",
    "MAX_LEDGER_DELIVERIES",
    "Checkpoint",
    "DeliveryAttempt",
    "DeliveryLedger",
    "JobQueue",
    "RunRecord",
    "SentMessage",
    "StateConflictError",
    "StateStore",
    "StateStoreError",
    "StateValueTooLargeError",
    "StorageConnection",
    "desanitize_key",
    "sanitize_key",
    "storage_connection",
]

__getattr__ = lazy_attributes(__name__, _WHERE)
