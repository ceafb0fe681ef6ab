"""The runner: an offline stand-in for the Functions host, driving an app's own functions.

It runs whatever ``func.FunctionApp`` its caller gives it (the CLI passes the app root's
``function_app.app``) with the storage extension's queue semantics, against a real storage
account (Azurite locally):

- timer: :meth:`FunctionsHost.run_timer` calls the function once with a ``TimerRequest``
  (``past_due`` False); :meth:`FunctionsHost.serve` fires timers on their schedule
  (:mod:`shared.host.timers`).
- queue output bindings: see :mod:`shared.host.invocation`.
- queue trigger: see :mod:`shared.host.listener` (batches, visibility, poison);
  :meth:`FunctionsHost.run_queue_until_idle` drains (:mod:`shared.host.drain`),
  :meth:`FunctionsHost.serve` listens until stopped (:mod:`shared.host.serve`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import azure.functions as func

from shared.errors import HostError
from shared.host.config import HostOptions, QueueOptions, load_host_options
from shared.host.drain import DrainTiming, drain
from shared.host.functions import FunctionSpec, app_functions, resolve_functions
from shared.host.invocation import invoke
from shared.host.listener import QueueListener, lease_seconds
from shared.host.queues import DEFAULT_CONNECTION, HostQueues
from shared.host.serve import Worker, run_until_stopped, signal_handlers
from shared.host.stats import DrainResult, QueueStats
from shared.host.timers import TimerLoop, timer_request
from shared.storage import StorageConnection

logger = logging.getLogger(__name__)

__all__ = ["DrainResult", "FunctionsHost", "HostError", "QueueStats"]


class FunctionsHost:
    """Run an app's timer and queue functions against storage, as the Functions host would.

    ``app`` is a ``func.FunctionApp`` (its function list is built once per app object) or a
    sequence of its functions. ``host_json`` is the path of the app's host.json or the
    options already parsed from it. ``env`` holds the app settings (``%Setting%``
    expressions and storage connections are read from it). The runner imports nothing of
    the app itself: its caller (``python -m shared.host``) finds and passes both.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        app: Any,
        host_json: Path | HostOptions,
    ) -> None:
        functions: Sequence[Any] = (
            app_functions(app) if isinstance(app, func.FunctionApp) else tuple(app)
        )
        self.env = dict(env)
        if isinstance(host_json, HostOptions):
            self.options = host_json
        else:
            self.options = load_host_options(host_json)
        self.functions = resolve_functions(functions, self.env)
        self.queues = HostQueues(self.env, self.options.queues)
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
            raise HostError(
                f"no queue-triggered function listens on queue {queue!r} (queues: "
                f"{', '.join(self.listened_queues()) or 'none'})"
            )
        return specs

    def listened_queues(self) -> tuple[str, ...]:
        """Every queue a function listens on, sorted."""
        return tuple(sorted({s.queue_name for s in self.functions.values() if s.queue_name}))

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
        """The parsed storage connection setting ``name``."""
        return self.queues.connection(name)

    async def enqueue(self, queue: str, *texts: str, connection: str = DEFAULT_CONNECTION) -> None:
        """Send messages to ``queue`` encoded as the host expects (creating the queue)."""
        await self.queues.send(connection, queue, texts)

    async def peek(
        self, queue: str, *, connection: str = DEFAULT_CONNECTION, decode: bool = True
    ) -> list[str]:
        """Up to 32 visible messages of ``queue`` (decoded per messageEncoding), not removed."""
        return await self.queues.peek(queue, connection=connection, decode=decode)

    async def message_count(self, queue: str, *, connection: str = DEFAULT_CONNECTION) -> int:
        """Approximate number of messages in ``queue``, visible or not (0 if it is missing)."""
        return await self.queues.message_count(queue, connection=connection)

    def close(self) -> None:
        self.queues.close()

    # -- invoking ----------------------------------------------------------------------------

    async def _invoke(self, spec: FunctionSpec, trigger_value: Any) -> dict[str, list[str]]:
        return await invoke(
            spec, trigger_value, timeout=self.options.function_timeout, send=self.queues.send
        )

    async def run_timer(self, name: str, *, past_due: bool = False) -> dict[str, list[str]]:
        """Run the timer function ``name`` once; return the messages sent, by queue.

        An exception from the function propagates (and nothing is sent).
        """
        spec = self.function(name)
        if spec.trigger.type != "timerTrigger":
            raise HostError(f"function {name} is not timer-triggered ({spec.trigger.type})")
        logger.info("Executing timer function %s (past_due=%s)", name, past_due)
        sent = await self._invoke(spec, timer_request(past_due=past_due))
        logger.info(
            "Executed timer function %s: sent %d message(s)",
            name,
            sum(len(v) for v in sent.values()),
        )
        return sent

    async def _run_timer_logged(self, name: str, past_due: bool) -> None:
        try:
            await self.run_timer(name, past_due=past_due)
        except Exception as exc:
            self.timer_failures += 1
            logger.error("Timer function %s failed: %s: %s", name, type(exc).__name__, exc)
            logger.debug("Timer function %s failure details", name, exc_info=exc)

    # -- queues ------------------------------------------------------------------------------

    def listener(self, spec: FunctionSpec) -> QueueListener:
        """A listener for the queue-triggered function ``spec``."""
        return QueueListener(
            spec,
            self.queues,
            self.queue_options,
            self._invoke,
            lease=lease_seconds(self.options),
        )

    async def _count(self, listener: QueueListener) -> int:
        return await self.message_count(listener.queue, connection=listener.connection)

    def _add_stats(self, name: str, stats: QueueStats) -> None:
        self.stats.setdefault(name, QueueStats()).add(stats)

    async def run_queue_until_idle(
        self,
        *queues: str,
        timeout: float = 30.0,
        idle_seconds: float = 0.2,
        poll_interval: float = 0.05,
        wait_for_invisible: bool = True,
    ) -> DrainResult:
        """Process the queues' messages until they are idle (see :mod:`shared.host.drain`);
        no queue given: every queue a function listens on."""
        names = queues or self.listened_queues()
        specs = [spec for name in names for spec in self.queue_functions(name)]
        timing = DrainTiming(timeout, idle_seconds, poll_interval, wait_for_invisible)
        result = await drain(
            tuple(names),
            [self.listener(spec) for spec in specs],
            message_count=self._count,
            timing=timing,
        )
        for spec in specs:
            self._add_stats(spec.name, result.stats[spec.name])
        return result

    # -- the long-running loop ---------------------------------------------------------------

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
        workers: list[Worker] = []
        listeners: dict[str, QueueStats] = {}
        for spec in self.functions.values():
            if spec.queue_name and queues:
                stats = listeners[spec.name] = QueueStats()
                workers.append(functools.partial(self.listener(spec).listen, stats=stats))
            elif spec.trigger.type == "timerTrigger" and timers:
                workers.append(TimerLoop(spec, self._run_timer_logged))
        with signal_handlers(stop, install=install_signal_handlers):
            logger.info(
                "Host started: %d function(s) (%s)",
                len(workers),
                ", ".join(sorted(self.functions)),
            )
            try:
                await run_until_stopped(workers, stop)
            finally:
                for name, stats in listeners.items():
                    self._add_stats(name, stats)
                logger.info("Host stopped")
