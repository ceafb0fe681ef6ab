"""An offline stand-in for the Functions host, driving the app's own functions.

It runs whatever ``function_app.py`` (or any ``func.FunctionApp`` given) defines, with the
storage extension's queue semantics against a real storage account (Azurite locally):

- timer: :meth:`FunctionsHost.run_timer` calls the function once with a ``TimerRequest``
  (``past_due`` False); :meth:`FunctionsHost.serve` fires timers on their NCRONTAB schedule.
- queue output bindings: the function gets an ``Out``; after it returns normally, what it set
  (a str, bytes, QueueMessage or a list of them) is sent to the queue, encoded as
  ``messageEncoding`` says. Nothing is sent when the function raises.
- queue trigger: messages are received in batches of ``batchSize``; a new batch is fetched
  when no more than ``newBatchThreshold`` are still running (so at most batchSize +
  newBatchThreshold run at once). A function that returns deletes its message; one that
  raises leaves it to become visible again after ``visibilityTimeout``; at
  ``maxDequeueCount`` failed deliveries the message moves to ``<queue>-poison`` with the
  same body. Under base64 encoding a body that is not base64 goes to poison at once,
  without running the function. An empty queue is polled with exponential back-off up to
  ``maxPollingInterval``.

Messages are held invisible while they are processed for ``functionTimeout`` plus a margin
(the real host renews a shorter lease instead); a host that dies mid-message therefore
redelivers it later: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import secrets
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import _abc
from azure.functions.queue import QueueMessage as FunctionQueueMessage
from azure.functions.timer import TimerRequest

from shared.errors import HostError
from shared.host.config import HostOptions, QueueOptions, load_host_options
from shared.host.functions import FunctionSpec, app_functions, resolve_functions
from shared.host.schedule import parse_schedule
from shared.storage import StorageConnection, storage_connection

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

logger = logging.getLogger(__name__)

__all__ = ["DrainResult", "FunctionsHost", "HostError", "QueueStats"]

T = TypeVar("T")

POISON_SUFFIX = "-poison"
_MIN_POLL = 0.1  # the first back-off step when a queue is empty (as the real host)


class _Out(func.Out[T], Generic[T]):
    """A concrete ``azure.functions.Out``: what the function sets, for the host to send."""

    def __init__(self) -> None:
        self._value: T | None = None
        self.was_set = False

    def set(self, val: T) -> None:
        self._value = val
        self.was_set = True

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


class _TraceContext(_abc.TraceContext):
    def __init__(self, trace_parent: str) -> None:
        self._trace_parent = trace_parent

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _Context(func.Context):
    def __init__(self, function_name: str, directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._directory = directory
        trace_parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        self._trace = _TraceContext(trace_parent)

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def thread_local_storage(self) -> Any:
        return None

    @property
    def trace_context(self) -> Any:
        """A fresh W3C trace per invocation, as the host starts one for each."""
        return self._trace

    @property
    def retry_context(self) -> Any:
        return None


@dataclass
class QueueStats:
    """What a queue listener did (counts, for tests and the drain summary)."""

    received: int = 0
    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0
    max_in_flight: int = 0


@dataclass
class DrainResult:
    """The outcome of :meth:`FunctionsHost.run_queue_until_idle`."""

    queues: tuple[str, ...]
    stats: dict[str, QueueStats] = field(default_factory=dict)
    timed_out: bool = False

    def _sum(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.stats.values())

    @property
    def invocations(self) -> int:
        return self._sum("invocations")

    @property
    def succeeded(self) -> int:
        return self._sum("succeeded")

    @property
    def failed(self) -> int:
        return self._sum("failed")

    @property
    def poisoned(self) -> int:
        return self._sum("poisoned")

    @property
    def max_in_flight(self) -> int:
        return max((s.max_in_flight for s in self.stats.values()), default=0)


def _output_texts(spec: FunctionSpec, binding: str, value: Any) -> list[str]:
    items: Iterable[Any]
    if isinstance(value, str | bytes | func.QueueMessage):
        items = [value]
    elif isinstance(value, Iterable):
        items = value
    else:
        raise TypeError(
            f"function {spec.name}: output {binding!r} was set to {type(value).__name__}; "
            "expected str, bytes, QueueMessage or a list of them"
        )
    texts: list[str] = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, bytes):
            texts.append(item.decode("utf-8"))
        elif isinstance(item, func.QueueMessage):
            texts.append(item.get_body().decode("utf-8"))
        else:
            raise TypeError(
                f"function {spec.name}: output {binding!r} holds a {type(item).__name__}; "
                "expected str, bytes or QueueMessage"
            )
    return texts


class FunctionsHost:
    """Run an app's timer and queue functions against storage, as the Functions host would.

    ``app`` is a ``func.FunctionApp`` (its function list is built once per app object) or a
    sequence of its functions; by default the project's ``function_app.app``. ``env`` holds
    the app settings (``%Setting%`` expressions and storage connections are read from it).
    ``host_json`` is a path or the parsed options; by default the project's host.json.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        app: Any = None,
        host_json: Path | HostOptions | None = None,
    ) -> None:
        if app is None:
            import function_app

            app = function_app.app
        functions: Sequence[Any] = (
            app_functions(app) if isinstance(app, func.FunctionApp) else tuple(app)
        )
        self.env = dict(env)
        if isinstance(host_json, HostOptions):
            self.options = host_json
        else:
            path = host_json or Path(__file__).resolve().parents[2] / "host.json"
            self.options = load_host_options(path)
        self.functions = resolve_functions(functions, self.env)
        self._connections: dict[str, StorageConnection] = {}
        self._clients: dict[tuple[str, str, bool], QueueClient] = {}
        self._created: set[tuple[str, str]] = set()
        self.stats: dict[str, QueueStats] = {}
        self.timer_failures = 0  # timer invocations that raised (serve)

    # -- lookup ------------------------------------------------------------------------------

    def function(self, name: str) -> FunctionSpec:
        spec = self.functions.get(name)
        if spec is None:
            known = ", ".join(sorted(self.functions)) or "none"
            raise HostError(f"the app defines no function named {name!r} (it has: {known})")
        return spec

    def queue_functions(self, queue: str) -> list[FunctionSpec]:
        specs = [s for s in self.functions.values() if s.queue_name == queue]
        if not specs:
            listened = sorted({s.queue_name for s in self.functions.values() if s.queue_name})
            raise HostError(
                f"no queue-triggered function listens on queue {queue!r} (queues: "
                f"{', '.join(listened) or 'none'})"
            )
        return specs

    @property
    def queue_options(self) -> QueueOptions:
        return self.options.queues

    @property
    def poisoned(self) -> int:
        """Messages this host moved to a poison queue (every listener, every run so far)."""
        return sum(s.poisoned for s in self.stats.values())

    @property
    def failed(self) -> int:
        """Queue invocations that raised, plus timer invocations that raised (serve)."""
        return sum(s.failed for s in self.stats.values()) + self.timer_failures

    # -- storage -----------------------------------------------------------------------------

    def connection(self, name: str) -> StorageConnection:
        connection = self._connections.get(name)
        if connection is None:
            connection = storage_connection(self.env, name)
            self._connections[name] = connection
        return connection

    def _client(self, connection: str, queue: str, *, encode: bool = False) -> QueueClient:
        key = (connection, queue, encode)
        client = self._clients.get(key)
        if client is None:
            client = self.connection(connection).queue_client(
                queue, base64=encode and self.queue_options.base64
            )
            self._clients[key] = client
        return client

    def _ensure_queue(self, connection: str, queue: str) -> None:
        if (connection, queue) in self._created:
            return
        with contextlib.suppress(ResourceExistsError):
            self._client(connection, queue).create_queue()
        self._created.add((connection, queue))

    def _send_sync(self, connection: str, queue: str, texts: Sequence[str]) -> None:
        self._ensure_queue(connection, queue)
        client = self._client(connection, queue, encode=True)
        for text in texts:
            client.send_message(text)

    async def enqueue(
        self, queue: str, *texts: str, connection: str = "AzureWebJobsStorage"
    ) -> None:
        """Send messages to ``queue`` encoded as the host expects (creating the queue)."""
        await asyncio.to_thread(self._send_sync, connection, queue, texts)

    async def peek(
        self, queue: str, *, connection: str = "AzureWebJobsStorage", decode: bool = True
    ) -> list[str]:
        """Up to 32 visible messages of ``queue`` (decoded per messageEncoding), not removed."""

        def call() -> list[str]:
            try:
                messages = self._client(connection, queue).peek_messages(max_messages=32)
            except ResourceNotFoundError:
                return []
            raw = [str(m.content) for m in messages]
            if decode and self.queue_options.base64:
                return [base64.b64decode(r).decode("utf-8") for r in raw]
            return raw

        return await asyncio.to_thread(call)

    async def message_count(self, queue: str, *, connection: str = "AzureWebJobsStorage") -> int:
        """Approximate number of messages in ``queue``, visible or not (0 if it is missing)."""

        def call() -> int:
            try:
                props = self._client(connection, queue).get_queue_properties()
            except ResourceNotFoundError:
                return 0
            return int(props.approximate_message_count or 0)

        return await asyncio.to_thread(call)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # -- invoking ----------------------------------------------------------------------------

    async def _invoke(self, spec: FunctionSpec, trigger_value: Any) -> dict[str, list[str]]:
        """Call the user function; on success send its queue outputs; return what was sent."""
        outs: dict[str, _Out[Any]] = {}
        kwargs: dict[str, Any] = {spec.trigger.name: trigger_value}
        for binding in spec.outputs:
            if binding.name != "$return":
                outs[binding.name] = kwargs[binding.name] = _Out[Any]()
        if spec.wants_context:
            kwargs["context"] = _Context(spec.name, str(Path.cwd()))
        timeout = self.options.function_timeout
        if spec.is_async:
            result = await asyncio.wait_for(spec.user_function(**kwargs), timeout)
        else:  # like the worker: sync functions run in a thread (not stopped on timeout)
            result = await asyncio.wait_for(
                asyncio.to_thread(spec.user_function, **kwargs), timeout
            )
        sent: dict[str, list[str]] = {}
        for binding in spec.outputs:
            if binding.name == "$return":
                value, was_set = result, result is not None
            else:
                value, was_set = outs[binding.name].get(), outs[binding.name].was_set
            if not was_set or value is None:
                continue
            texts = _output_texts(spec, binding.name, value)
            if texts:
                await asyncio.to_thread(
                    self._send_sync, binding.connection, binding.queue_name, texts
                )
                sent.setdefault(binding.queue_name, []).extend(texts)
        return sent

    async def run_timer(self, name: str, *, past_due: bool = False) -> dict[str, list[str]]:
        """Run the timer function ``name`` once; return the messages sent, by queue.

        An exception from the function propagates (and nothing is sent).
        """
        spec = self.function(name)
        if spec.trigger.type != "timerTrigger":
            raise HostError(f"function {name} is not timer-triggered ({spec.trigger.type})")
        schedule = {"AdjustForDST": False}
        request = TimerRequest(past_due=past_due, schedule=schedule, schedule_status={})
        logger.info("Executing timer function %s (past_due=%s)", name, past_due)
        sent = await self._invoke(spec, request)
        logger.info(
            "Executed timer function %s: sent %d message(s)",
            name,
            sum(len(v) for v in sent.values()),
        )
        return sent

    # -- queue processing --------------------------------------------------------------------

    def _lease_seconds(self) -> int:
        timeout = self.options.function_timeout
        margin = self.options.lease_margin
        return max(1, int(min((timeout or 3600.0) + margin, 7 * 24 * 3600)))

    async def _poison(
        self, spec: FunctionSpec, message: QueueMessage, reason: str, stats: QueueStats
    ) -> None:
        queue = spec.trigger.queue_name
        poison = queue + POISON_SUFFIX
        connection = spec.trigger.connection

        def call() -> None:
            self._ensure_queue(connection, poison)
            self._client(connection, poison).send_message(message.content)
            self._client(connection, queue).delete_message(message.id, message.pop_receipt)

        await asyncio.to_thread(call)
        stats.poisoned += 1
        logger.error("Message %s of queue %s moved to %s: %s", message.id, queue, poison, reason)

    async def _process(self, spec: FunctionSpec, message: QueueMessage, stats: QueueStats) -> None:
        options = self.queue_options
        queue = spec.trigger.queue_name
        connection = spec.trigger.connection
        count = int(message.dequeue_count or 0)
        if count > options.max_dequeue_count:
            await self._poison(
                spec,
                message,
                f"dequeue count {count} exceeds maxDequeueCount {options.max_dequeue_count}",
                stats,
            )
            return
        raw = str(message.content or "")
        if options.base64:
            try:
                body = base64.b64decode(raw.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                await self._poison(
                    spec,
                    message,
                    "the body is not valid base64 (host.json extensions.queues."
                    "messageEncoding is base64: producers must base64-encode, e.g. with "
                    "TextBase64EncodePolicy); the function was not run",
                    stats,
                )
                return
        else:
            body = raw.encode("utf-8")
        trigger = FunctionQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        stats.invocations += 1
        try:
            await self._invoke(spec, trigger)
        except Exception as exc:
            stats.failed += 1
            logger.warning(
                "Function %s failed on message %s (dequeue count %d of %d): %s: %s",
                spec.name,
                message.id,
                count,
                options.max_dequeue_count,
                type(exc).__name__,
                exc,
            )
            logger.debug("Function %s failure details", spec.name, exc_info=exc)
            if count >= options.max_dequeue_count:
                await self._poison(
                    spec,
                    message,
                    f"function {spec.name} failed {count} time(s) (maxDequeueCount "
                    f"{options.max_dequeue_count}); last error: {type(exc).__name__}: {exc}",
                    stats,
                )
                return

            def release() -> None:
                with contextlib.suppress(ResourceNotFoundError):
                    self._client(connection, queue).update_message(
                        message.id,
                        message.pop_receipt,
                        visibility_timeout=int(options.visibility_timeout),
                    )

            await asyncio.to_thread(release)
            return
        stats.succeeded += 1

        def delete() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self._client(connection, queue).delete_message(message.id, message.pop_receipt)

        await asyncio.to_thread(delete)

    async def _receive(self, spec: FunctionSpec, count: int) -> list[QueueMessage]:
        lease = self._lease_seconds()

        def call() -> list[QueueMessage]:
            client = self._client(spec.trigger.connection, spec.trigger.queue_name)
            try:
                pages = client.receive_messages(
                    messages_per_page=count, max_messages=count, visibility_timeout=lease
                ).by_page()
                return list(next(pages, []))
            except ResourceNotFoundError:
                return []

        return await asyncio.to_thread(call)

    async def _listen(
        self,
        spec: FunctionSpec,
        stop: asyncio.Event,
        stats: QueueStats,
        *,
        idle: Callable[[bool], None] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        """Receive and process messages for ``spec`` until ``stop`` is set.

        ``idle(True)`` is called whenever nothing was received and nothing is in flight,
        ``idle(False)`` when there is work. ``poll_interval`` fixes the empty-queue wait
        (drain mode); otherwise it backs off from 0.1 s to maxPollingInterval.
        """
        options = self.queue_options
        in_flight: set[asyncio.Task[None]] = set()
        delay = _MIN_POLL
        try:
            while not stop.is_set():
                if len(in_flight) > options.new_batch_threshold:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                messages = await self._receive(spec, options.batch_size)
                if messages:
                    if idle:
                        idle(False)
                    delay = _MIN_POLL
                    stats.received += len(messages)
                    for message in messages:
                        task = asyncio.create_task(self._process_safely(spec, message, stats))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                    stats.max_in_flight = max(stats.max_in_flight, len(in_flight))
                    continue
                if idle:
                    idle(not in_flight)
                wait = poll_interval if poll_interval is not None else delay
                waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
                waiters.update(in_flight)
                done, pending = await asyncio.wait(
                    waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in pending:
                    if waiter not in in_flight:
                        waiter.cancel()
                if poll_interval is None and not done:
                    delay = min(delay * 2, options.max_polling_interval)
        finally:
            if in_flight:  # graceful: let the messages being processed finish
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _process_safely(
        self, spec: FunctionSpec, message: QueueMessage, stats: QueueStats
    ) -> None:
        try:
            await self._process(spec, message, stats)
        except Exception:  # a storage failure: the message reappears after its lease
            logger.exception("Host could not complete message %s of %s", message.id, spec.name)

    async def run_queue_until_idle(
        self,
        *queues: str,
        timeout: float = 30.0,
        idle_seconds: float = 0.2,
        poll_interval: float = 0.05,
        wait_for_invisible: bool = True,
    ) -> DrainResult:
        """Process the queues' messages until they are idle; no queue given: every queue
        a function listens on.

        Idle means: nothing received, nothing in flight and (``wait_for_invisible``) no
        message left in the queue at all, not even one waiting out its visibilityTimeout,
        for ``idle_seconds``. Gives up after ``timeout`` seconds (``timed_out`` is then
        True); work in flight is always finished first.
        """
        names = queues or tuple(
            sorted({s.queue_name for s in self.functions.values() if s.queue_name})
        )
        specs = [spec for name in names for spec in self.queue_functions(name)]
        result = DrainResult(queues=tuple(names))
        stop = asyncio.Event()
        idle_flags = {spec.name: False for spec in specs}
        tasks = []
        for spec in specs:
            stats = result.stats[spec.name] = QueueStats()

            def mark(is_idle: bool, name: str = spec.name) -> None:
                idle_flags[name] = is_idle

            tasks.append(
                asyncio.create_task(
                    self._listen(spec, stop, stats, idle=mark, poll_interval=poll_interval)
                )
            )
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        try:
            while True:
                now = time.monotonic()
                quiet = all(idle_flags.values())
                if quiet and wait_for_invisible:
                    counts = await asyncio.gather(*(self._count(spec) for spec in specs))
                    quiet = not any(counts)
                if quiet:
                    idle_since = idle_since or now
                    if now - idle_since >= idle_seconds:
                        break
                else:
                    idle_since = None
                if now >= deadline:
                    result.timed_out = True
                    logger.warning(
                        "Queues %s were not idle after %ss: stopping", ", ".join(names), timeout
                    )
                    break
                failed = [t for t in tasks if t.done() and t.exception()]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
                await asyncio.sleep(poll_interval)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        for spec in specs:
            self._add_stats(spec.name, result.stats[spec.name])
        return result

    async def _count(self, spec: FunctionSpec) -> int:
        return await self.message_count(spec.trigger.queue_name, connection=spec.trigger.connection)

    def _add_stats(self, name: str, stats: QueueStats) -> None:
        total = self.stats.setdefault(name, QueueStats())
        for attr in ("received", "invocations", "succeeded", "failed", "poisoned"):
            setattr(total, attr, getattr(total, attr) + getattr(stats, attr))
        total.max_in_flight = max(total.max_in_flight, stats.max_in_flight)

    # -- the long-running loop ---------------------------------------------------------------

    async def _timer_loop(self, spec: FunctionSpec, stop: asyncio.Event) -> None:
        schedule = parse_schedule(
            str(spec.trigger.properties.get("schedule", "")),
            key=f"function {spec.name} schedule",
        )
        if spec.trigger.properties.get("runOnStartup"):
            await self._run_timer_logged(spec.name, past_due=False)
        while not stop.is_set():
            now = datetime.now(timezone.utc)
            due = schedule.next_after(now)
            logger.info("Timer function %s: next run at %s", spec.name, due.isoformat())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), (due - now).total_seconds())
            if stop.is_set():
                return
            late = (datetime.now(timezone.utc) - due).total_seconds()
            await self._run_timer_logged(spec.name, past_due=late > 60)

    async def _run_timer_logged(self, name: str, *, past_due: bool) -> None:
        try:
            await self.run_timer(name, past_due=past_due)
        except Exception as exc:
            self.timer_failures += 1
            logger.error("Timer function %s failed: %s: %s", name, type(exc).__name__, exc)
            logger.debug("Timer function %s failure details", name, exc_info=exc)

    async def serve(
        self,
        stop: asyncio.Event | None = None,
        *,
        install_signal_handlers: bool = True,
        timers: bool = True,
        queues: bool = True,
    ) -> None:
        """Run every queue listener and timer until ``stop`` is set or SIGTERM/SIGINT.

        On stop, nothing new is received or started; messages in flight finish first.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(signum, self._on_signal, signum, stop)
                    installed.append(signum)
        tasks: list[asyncio.Task[None]] = []
        listeners: dict[str, QueueStats] = {}
        for spec in self.functions.values():
            if spec.queue_name and queues:
                stats = listeners[spec.name] = QueueStats()
                tasks.append(asyncio.create_task(self._listen(spec, stop, stats)))
            elif spec.trigger.type == "timerTrigger" and timers:
                tasks.append(asyncio.create_task(self._timer_loop(spec, stop)))
        logger.info(
            "Host started: %d function(s) (%s)", len(tasks), ", ".join(sorted(self.functions))
        )
        try:
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    stop.set()
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for signum in installed:
                loop.remove_signal_handler(signum)
            for name, stats in listeners.items():
                self._add_stats(name, stats)
            logger.info("Host stopped")

    @staticmethod
    def _on_signal(signum: signal.Signals, stop: asyncio.Event) -> None:
        logger.info("Received %s: finishing work in flight, then stopping", signum.name)
        stop.set()
