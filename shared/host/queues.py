"""The runner's storage queues: clients per connection and queue, encoded sends, and the
message operations a queue listener needs (receive under a lease, complete, release, poison).

Every method that talks to storage is synchronous (the queue SDK's sync clients, one per
connection and queue, reused); the async wrappers run them in a thread. Text is sent as
host.json ``extensions.queues.messageEncoding`` says (base64 by default, as the storage
extension expects:
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#hostjson-settings).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.host.config import QueueOptions
from shared.storage import StorageConnection, storage_connection

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

__all__ = ["DEFAULT_CONNECTION", "POISON_SUFFIX", "HostQueues"]

POISON_SUFFIX = "-poison"
DEFAULT_CONNECTION = "AzureWebJobsStorage"
_PEEK_MAX = 32  # the queue service's limit for one peek


class HostQueues:
    """Queue access for the runner: ``env`` holds the storage connection settings."""

    def __init__(self, env: Mapping[str, str], options: QueueOptions) -> None:
        self.env = env
        self.options = options
        self._connections: dict[str, StorageConnection] = {}
        self._clients: dict[tuple[str, str, bool], QueueClient] = {}
        self._created: set[tuple[str, str]] = set()

    def connection(self, name: str) -> StorageConnection:
        """The parsed storage connection setting ``name`` (parsed once)."""
        connection = self._connections.get(name)
        if connection is None:
            connection = storage_connection(self.env, name)
            self._connections[name] = connection
        return connection

    def client(self, connection: str, queue: str, *, encode: bool = False) -> QueueClient:
        """A cached client; ``encode`` base64-encodes what it sends when messageEncoding is
        base64 (otherwise the text is sent as it is)."""
        key = (connection, queue, encode)
        client = self._clients.get(key)
        if client is None:
            client = self.connection(connection).queue_client(
                queue, base64=encode and self.options.base64
            )
            self._clients[key] = client
        return client

    def ensure_queue(self, connection: str, queue: str) -> None:
        """Create ``queue`` unless this runner already did (or it exists)."""
        if (connection, queue) in self._created:
            return
        with contextlib.suppress(ResourceExistsError):
            self.client(connection, queue).create_queue()
        self._created.add((connection, queue))

    def send_sync(self, connection: str, queue: str, texts: Sequence[str]) -> None:
        """Send ``texts`` to ``queue`` (created if needed), encoded per messageEncoding."""
        self.ensure_queue(connection, queue)
        client = self.client(connection, queue, encode=True)
        for text in texts:
            client.send_message(text)

    async def send(self, connection: str, queue: str, texts: Sequence[str]) -> None:
        await asyncio.to_thread(self.send_sync, connection, queue, texts)

    async def peek(self, queue: str, *, connection: str, decode: bool = True) -> list[str]:
        """Up to 32 visible messages of ``queue`` (decoded per messageEncoding), not removed."""

        def call() -> list[str]:
            try:
                messages = self.client(connection, queue).peek_messages(max_messages=_PEEK_MAX)
            except ResourceNotFoundError:
                return []
            raw = [str(m.content) for m in messages]
            if decode and self.options.base64:
                return [base64.b64decode(r).decode("utf-8") for r in raw]
            return raw

        return await asyncio.to_thread(call)

    async def message_count(self, queue: str, *, connection: str) -> int:
        """Approximate number of messages in ``queue``, visible or not (0 if it is missing)."""

        def call() -> int:
            try:
                props = self.client(connection, queue).get_queue_properties()
            except ResourceNotFoundError:
                return 0
            return int(props.approximate_message_count or 0)

        return await asyncio.to_thread(call)

    # -- what a listener does with a message -------------------------------------------------

    async def receive(
        self, connection: str, queue: str, count: int, *, lease: int
    ) -> list[QueueMessage]:
        """Up to ``count`` messages, each invisible to others for ``lease`` seconds."""

        def call() -> list[QueueMessage]:
            client = self.client(connection, queue)
            try:
                pages = client.receive_messages(
                    messages_per_page=count, max_messages=count, visibility_timeout=lease
                ).by_page()
                return list(next(pages, []))
            except ResourceNotFoundError:
                return []

        return await asyncio.to_thread(call)

    async def complete(self, connection: str, queue: str, message: QueueMessage) -> None:
        """Delete a processed message (already gone: nothing to do)."""

        def call() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self.client(connection, queue).delete_message(message.id, message.pop_receipt)

        await asyncio.to_thread(call)

    async def release(
        self, connection: str, queue: str, message: QueueMessage, *, visibility_timeout: int
    ) -> None:
        """Make a failed message visible again after ``visibility_timeout`` seconds."""

        def call() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self.client(connection, queue).update_message(
                    message.id, message.pop_receipt, visibility_timeout=visibility_timeout
                )

        await asyncio.to_thread(call)

    async def move_to_poison(self, connection: str, queue: str, message: QueueMessage) -> str:
        """Send the message's stored text, unchanged, to ``<queue>-poison``, then delete it
        from ``queue``; return the poison queue's name."""
        poison = queue + POISON_SUFFIX

        def call() -> None:
            self.ensure_queue(connection, poison)
            self.client(connection, poison).send_message(message.content)
            self.client(connection, queue).delete_message(message.id, message.pop_receipt)

        await asyncio.to_thread(call)
        return poison

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
