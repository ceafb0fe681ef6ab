"""The jobs queue: sending job messages to a storage queue the way the Functions host reads
them.

The host decodes queue messages as host.json ``extensions.queues.messageEncoding`` says,
base64 by default
(https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue#host-json):
a plain-text message it cannot decode goes to the poison queue unread. ``azure.storage.queue``
is imported only when a queue is first used.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from azure.core.exceptions import ResourceExistsError

from shared.storage.connection import StorageConnection
from shared.storage.sdk import in_thread

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

__all__ = ["JobQueue", "SentMessage"]

T = TypeVar("T")


@dataclass(frozen=True)
class SentMessage:
    """A message :class:`JobQueue` sent: its id, and the pop receipt to change it."""

    id: str
    pop_receipt: str = field(repr=False)


class JobQueue:
    """Sends job messages to ``queue`` as the Functions host reads them.

    ``base64`` follows host.json ``extensions.queues.messageEncoding`` (base64 by default: a
    plain-text message would go to poison unread). The queue is created on first use.
    Every SDK failure is raised as :class:`~shared.errors.StateStoreError`.
    """

    def __init__(self, connection: StorageConnection, queue: str, *, base64: bool = True) -> None:
        self.queue = queue
        self._connection = connection
        self._base64 = base64
        self._clients: dict[str, QueueClient] = {}
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def _client(self, name: str) -> QueueClient:
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._connection.queue_client(name, base64=self._base64)
                self._clients[name] = client
        if name not in self._created:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            self._created.add(name)
        return client

    async def _call(self, call: Callable[[], T]) -> T:
        return await in_thread(call, service="Queue storage")

    async def send(self, text: str, *, hidden_for: int = 0) -> SentMessage:
        """Send one message; ``hidden_for`` seconds before anyone can receive it."""

        def call() -> SentMessage:
            sent = self._client(self.queue).send_message(
                text, visibility_timeout=hidden_for or None
            )
            return SentMessage(str(sent.id), str(sent.pop_receipt))

        return await self._call(call)

    async def send_all(self, texts: list[str]) -> int:
        """Send each of ``texts`` (in order); returns how many were sent."""

        def call() -> int:
            client = self._client(self.queue)
            for text in texts:
                client.send_message(text)
            return len(texts)

        return await self._call(call)

    async def reveal(self, message: SentMessage) -> None:
        """Make a message sent with ``hidden_for`` visible now."""

        def call() -> None:
            self._client(self.queue).update_message(
                message.id, message.pop_receipt, visibility_timeout=0
            )

        await self._call(call)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
