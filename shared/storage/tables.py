"""The tables of one state store, and the one way every part of the store calls them.

:class:`StoreTables` is the base of each part of :class:`~shared.storage.StateStore`
(checkpoints, run records, the done ledger, the delivery ledger): it names the tables from
``table_prefix``, creates each table on first use and keeps one SDK client per table, and
runs every SDK call through :func:`~shared.storage.sdk.in_thread`. The parts hold no state
of their own. One instance may be used from any event loop: the SDK clients are synchronous
and every call runs in a worker thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TypeVar

from azure.data.tables import TableClient, TableServiceClient

from shared.storage.sdk import in_thread

__all__ = ["StoreTables"]

T = TypeVar("T")


class StoreTables:
    """The tables ``<prefix>checkpoints``, ``<prefix>runs``, ``<prefix>ledger`` and
    ``<prefix>deliveries`` of ``service`` (``table_prefix``: a letter, then up to 40 letters
    or digits, so every name stays a valid table name)."""

    def __init__(self, service: TableServiceClient, *, table_prefix: str = "daemon") -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,40}", table_prefix):
            raise ValueError(
                f"table_prefix {table_prefix!r}: expected a letter then letters or digits"
            )
        self._service = service
        self.checkpoints_table = f"{table_prefix}checkpoints"
        self.runs_table = f"{table_prefix}runs"
        self.ledger_table = f"{table_prefix}ledger"
        self.deliveries_table = f"{table_prefix}deliveries"
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for client in self._tables.values():
                client.close()
            self._tables.clear()
        self._service.close()

    def _table(self, name: str) -> TableClient:
        """The client of table ``name``, creating the table the first time (blocking)."""
        with self._lock:
            client = self._tables.get(name)
            if client is None:
                client = self._service.create_table_if_not_exists(name)
                self._tables[name] = client
            return client

    async def _call(self, call: Callable[[], T]) -> T:
        """Run the blocking ``call`` off the event loop; SDK errors become StateStoreError."""
        return await in_thread(call, service="Table storage")
