"""A queue trigger's listener: polling, concurrency, visibility and poison handling.

With the storage extension's semantics
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#concurrency,
#poison-messages and #polling-algorithm):

- messages are received in batches of ``batchSize``; a new batch is fetched when no more
  than ``newBatchThreshold`` are still running (so at most batchSize + newBatchThreshold
  run at once);
- a function that returns deletes its message; one that raises leaves it to become visible
  again after ``visibilityTimeout``; at ``maxDequeueCount`` failed deliveries the message
  moves to ``<queue>-poison`` with the same body. Under base64 encoding a body that is not
  base64 goes to poison at once, without running the function;
- an empty queue is polled with exponential back-off up to ``maxPollingInterval``.

Messages are held invisible while they are processed for ``functionTimeout`` plus a margin
(the real host renews a shorter lease instead); a runner that dies mid-message therefore
redelivers it later: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from azure.functions.queue import QueueMessage as FunctionQueueMessage

from shared.host.config import HostOptions, QueueOptions
from shared.host.functions import FunctionSpec
from shared.host.stats import QueueStats

if TYPE_CHECKING:
    from azure.storage.queue import QueueMessage

logger = logging.getLogger(__name__)

__all__ = ["MIN_POLL", "ListenerQueues", "QueueListener", "decode_body", "lease_seconds"]

MIN_POLL = 0.1  # the first back-off step when a queue is empty (as the real host)
_MAX_LEASE = 7 * 24 * 3600  # the queue service's longest visibility timeout
_NOT_BASE64 = (
    "the body is not valid base64 (host.json extensions.queues.messageEncoding is base64: "
    "producers must base64-encode, e.g. with TextBase64EncodePolicy); the function was not run"
)

Invoke = Callable[[FunctionSpec, Any], Awaitable[Any]]
Idle = Callable[[bool], None]


class ListenerQueues(Protocol):
    """The queue operations a listener uses (:class:`~shared.host.queues.HostQueues`)."""

    async def receive(
        self, connection: str, queue: str, count: int, *, lease: int
    ) -> list[QueueMessage]: ...

    async def complete(self, connection: str, queue: str, message: QueueMessage) -> None: ...

    async def release(
        self, connection: str, queue: str, message: QueueMessage, *, visibility_timeout: int
    ) -> None: ...

    async def move_to_poison(self, connection: str, queue: str, message: QueueMessage) -> str: ...


def lease_seconds(options: HostOptions) -> int:
    """How long a received message stays invisible: functionTimeout (an hour when it has
    no limit) plus the lease margin, within the service's 1 s to 7 days."""
    timeout = options.function_timeout
    return max(1, int(min((timeout or 3600.0) + options.lease_margin, _MAX_LEASE)))


def decode_body(raw: str, *, base64_encoded: bool) -> bytes | None:
    """The message body as the function sees it; None when base64 is expected but absent."""
    if not base64_encoded:
        return raw.encode("utf-8")
    try:
        return base64.b64decode(raw.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _trigger_value(message: QueueMessage, body: bytes, count: int) -> FunctionQueueMessage:
    return FunctionQueueMessage(  # type: ignore[no-untyped-call]
        id=message.id,
        body=body,
        dequeue_count=count,
        expiration_time=message.expires_on,
        insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on,
        pop_receipt=message.pop_receipt,
    )


class QueueListener:
    """Receives and processes the messages of one queue-triggered function."""

    def __init__(
        self,
        spec: FunctionSpec,
        queues: ListenerQueues,
        options: QueueOptions,
        invoke: Invoke,
        *,
        lease: int,
    ) -> None:
        self.spec = spec
        self.queues = queues
        self.options = options
        self.invoke = invoke
        self.lease = lease
        self.queue = spec.trigger.queue_name
        self.connection = spec.trigger.connection

    # -- one message -------------------------------------------------------------------------

    async def _poison(self, message: QueueMessage, reason: str, stats: QueueStats) -> None:
        poison = await self.queues.move_to_poison(self.connection, self.queue, message)
        stats.poisoned += 1
        logger.error(
            "Message %s of queue %s moved to %s: %s", message.id, self.queue, poison, reason
        )

    async def process(self, message: QueueMessage, stats: QueueStats) -> None:
        """Run the function on ``message``, then complete, release or poison it."""
        limit = self.options.max_dequeue_count
        count = int(message.dequeue_count or 0)
        if count > limit:
            reason = f"dequeue count {count} exceeds maxDequeueCount {limit}"
            await self._poison(message, reason, stats)
            return
        body = decode_body(str(message.content or ""), base64_encoded=self.options.base64)
        if body is None:
            await self._poison(message, _NOT_BASE64, stats)
            return
        stats.invocations += 1
        try:
            await self.invoke(self.spec, _trigger_value(message, body, count))
        except Exception as exc:
            stats.failed += 1
            await self._failed(message, count, exc, stats)
            return
        stats.succeeded += 1
        await self.queues.complete(self.connection, self.queue, message)

    async def _failed(
        self, message: QueueMessage, count: int, exc: Exception, stats: QueueStats
    ) -> None:
        name, limit = self.spec.name, self.options.max_dequeue_count
        logger.warning(
            "Function %s failed on message %s (dequeue count %d of %d): %s: %s",
            name,
            message.id,
            count,
            limit,
            type(exc).__name__,
            exc,
        )
        logger.debug("Function %s failure details", name, exc_info=exc)
        if count >= limit:
            reason = (
                f"function {name} failed {count} time(s) (maxDequeueCount {limit}); "
                f"last error: {type(exc).__name__}: {exc}"
            )
            await self._poison(message, reason, stats)
            return
        await self.queues.release(
            self.connection,
            self.queue,
            message,
            visibility_timeout=int(self.options.visibility_timeout),
        )

    async def process_safely(self, message: QueueMessage, stats: QueueStats) -> None:
        try:
            await self.process(message, stats)
        except Exception:  # a storage failure: the message reappears after its lease
            logger.exception("Host could not complete message %s of %s", message.id, self.spec.name)

    # -- the loop ----------------------------------------------------------------------------

    async def listen(
        self,
        stop: asyncio.Event,
        stats: QueueStats,
        *,
        idle: Idle | None = None,
        poll_interval: float | None = None,
    ) -> None:
        """Receive and process messages until ``stop`` is set.

        ``idle(True)`` is called whenever nothing was received and nothing is in flight,
        ``idle(False)`` when there is work. ``poll_interval`` fixes the empty-queue wait
        (drain mode); otherwise it backs off from 0.1 s to maxPollingInterval. On stop,
        the messages in flight finish first.
        """
        in_flight: set[asyncio.Task[None]] = set()
        delay = MIN_POLL
        try:
            while not stop.is_set():
                if len(in_flight) > self.options.new_batch_threshold:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                messages = await self.queues.receive(
                    self.connection, self.queue, self.options.batch_size, lease=self.lease
                )
                if messages:
                    if idle:
                        idle(False)
                    delay = MIN_POLL
                    self._start(messages, in_flight, stats)
                    continue
                if idle:
                    idle(not in_flight)
                wait = poll_interval if poll_interval is not None else delay
                woken = await self._wait(stop, in_flight, wait)
                if poll_interval is None and not woken:
                    delay = min(delay * 2, self.options.max_polling_interval)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _start(
        self, messages: list[QueueMessage], in_flight: set[asyncio.Task[None]], stats: QueueStats
    ) -> None:
        stats.received += len(messages)
        for message in messages:
            task = asyncio.create_task(self.process_safely(message, stats))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        stats.max_in_flight = max(stats.max_in_flight, len(in_flight))

    @staticmethod
    async def _wait(stop: asyncio.Event, in_flight: set[asyncio.Task[None]], wait: float) -> bool:
        """Wait up to ``wait`` seconds for stop or a message in flight to finish; True when
        one of them woke us (the back-off then starts again)."""
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
        waiters.update(in_flight)
        done, pending = await asyncio.wait(
            waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            if waiter not in in_flight:
                waiter.cancel()
        return bool(done)
