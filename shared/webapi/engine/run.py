"""The batch engine and its run loop: where a run starts, waits and ends.

Flow of one run (this module does 1, 2 and the loop; the others are named):

1. Validate (pure, ``operations.py``): a malformed operation — including a body that cannot
   be encoded as JSON — fails alone and never reaches the network; its dependants fail too.
2. Operations whose dependencies all succeeded wait in the ready queue (``scheduler.py``);
   the others wait for them. Nothing depends on anything inside a batch: every batch is
   fully parallel (``batches.py``), so the independent steps of many chains share full
   batches of 20. Member adds to one group ready together are coalesced (``coalesce.py``).
3. Batches go out concurrently (``concurrency`` in flight), each admitted by the tenant's
   :class:`TenantPacer` for its write and resource-unit cost; with ``use_batch=False`` each
   item is one request of its own (same rules). Pacing, counting and sending: ``send.py``.
4. A batch's answer is read item by item by ``batch_answer.py``; each item's answer is
   settled by ``settle.py`` (the rules: ``verdicts.py``); create conflicts read back
   (``readback.py``), coalesced binds fall back one by one (``bind.py``), replication
   delay is retried (``replication.py``).
5. Whole-batch failures (non-200 envelope, transport error, malformed answer) re-queue the
   affected operations; a POST whose outcome is unknown is only resent when it is safe
   (a CreateIdentity, or a member add), otherwise it is reported with ``outcome_unknown``.
6. Bounded: ``retry.max_attempts`` sends per operation and ``retry.max_total_seconds`` for
   the run, then ``gave_up``; replication-delay retries within ``replication_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Sequence

from shared.webapi.client import ApiClient
from shared.webapi.engine.batches import MAX_BATCH_SIZE
from shared.webapi.engine.coalesce import member_add
from shared.webapi.engine.report import EngineReport, EngineStats, Progress, ProgressCallback
from shared.webapi.engine.scheduler import ReadyQueue, fill
from shared.webapi.engine.send import Sender
from shared.webapi.engine.settle import Settler
from shared.webapi.engine.state import Item, Op
from shared.webapi.operations import Operation, Outcome, Result, validate_operations
from shared.webapi.pacing import PacingConfig, TenantPacer
from shared.webapi.retry import RetryPolicy
from shared.webapi.timing import Clock, Sleep, monotonic, real_sleep

__all__ = ["DEFAULT_REPLICATION_SECONDS", "BatchEngine"]

logger = logging.getLogger("shared.webapi.engine")

DEFAULT_REPLICATION_SECONDS = 60.0
"""How long a "does not exist" answer about an object created in the same run is retried.
Graph's Add members page (https://learn.microsoft.com/graph/api/group-post-members) says
to "retry after a brief delay"; Microsoft's "Designing for Eventual Consistency for
Microsoft Entra" (https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra)
explains that a new object can answer "Not Found" until it has replicated and gives no
bound (the docs are silent: we pick a bounded wait over an unbounded one), so a minute, a
generous bound that still ends a job well within the host's 10-minute function
timeout."""


class BatchEngine:
    """Applies operations through ``$batch`` (or one request each with ``use_batch=False``).

    Share one :class:`TenantPacer` (``pacer=``) among all engines of one tenant; otherwise
    each engine builds its own from ``pacing``. ``retry`` bounds each operation's sends
    (``max_attempts``) and the run's retrying time (``max_total_seconds``); with
    ``wait=False`` nothing waits for Retry-After or backoff (tests), the counting stays.
    ``coalesce_members`` turns the coalescing of member adds on (default) or off;
    ``replication_seconds`` bounds the retries of "does not exist" answers about objects
    created earlier in the same run.
    """

    def __init__(
        self,
        client: ApiClient,
        *,
        use_batch: bool = True,
        batch_size: int = MAX_BATCH_SIZE,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        pacer: TenantPacer | None = None,
        pacing: PacingConfig | None = None,
        coalesce_members: bool = True,
        replication_seconds: float = DEFAULT_REPLICATION_SECONDS,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not math.isfinite(replication_seconds) or replication_seconds < 0:
            raise ValueError("replication_seconds must be a finite number of seconds >= 0")
        self.client = client
        self.use_batch = use_batch
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy(max_attempts=6, max_total_seconds=900.0, base=1.0)
        self.clock = clock or monotonic
        self.sleep = sleep or real_sleep
        self.pacer = pacer or TenantPacer(pacing, clock=self.clock, sleep=self.sleep)
        self.coalesce_members = coalesce_members
        self.replication_seconds = replication_seconds
        self.rng = rng or random.Random()

    async def run(
        self, operations: Sequence[Operation], *, progress: ProgressCallback | None = None
    ) -> EngineReport:
        """Apply ``operations``; exactly one Result per operation, in the same order."""
        return await _Run(self, operations, progress).execute()


class _Run:
    def __init__(
        self,
        engine: BatchEngine,
        operations: Sequence[Operation],
        progress: ProgressCallback | None,
    ) -> None:
        self.e = engine
        self.client = engine.client
        self.pacer = engine.pacer
        self.policy = engine.retry
        self.clock = engine.clock
        self.operations = list(operations)
        self.progress = progress
        self.stats = EngineStats()
        self.ops: list[Op] = []
        self.results: list[Result | None] = [None] * len(self.operations)
        self.in_flight_items = 0
        self.start = self.clock()
        self.queue = ReadyQueue(coalesce=engine.coalesce_members)
        self.s = Settler(
            queue=self.queue,
            stats=self.stats,
            policy=self.policy,
            clock=self.clock,
            rng=engine.rng,
            start=self.start,
            replication_seconds=engine.replication_seconds,
            remaining=0,
        )
        self.sender = Sender(
            client=self.client,
            pacer=self.pacer,
            policy=self.policy,
            rng=engine.rng,
            stats=self.stats,
            settler=self.s,
        )

    # -- set-up -----------------------------------------------------------------------

    def _prepare(self) -> None:
        prepared, errors = validate_operations(self.operations, self.client.base)
        for index, message in sorted(errors.items()):
            op = self.operations[index]
            op_id = op.id if isinstance(op, Operation) and isinstance(op.id, str) else str(index)
            logger.warning("not sent: %s", message)
            self.results[index] = Result(
                operation_id=op_id,
                outcome=Outcome.FAILED,
                status=None,
                body=None,
                attempts=0,
                error=message,
                error_code="invalidOperation",
            )
            self.s.counts[Outcome.FAILED] += 1
        self.ops = [Op(p, member_add(p)) for p in prepared]
        by_id = {o.id: o for o in self.ops}
        for o in self.ops:
            if not o.prep.op.depends_on:
                continue
            o.deps = [by_id[d] for d in dict.fromkeys(o.prep.op.depends_on)]
            o.waiting = len(o.deps)
            for d in o.deps:
                if not d.dependants:
                    d.dependants = []
                d.dependants.append(o)
        self.s.remaining = len(self.ops)
        for o in self.ops:
            if o.waiting == 0:
                o.not_before = self.start
                self.queue.push(o)

    # -- main loop ----------------------------------------------------------------------

    async def execute(self) -> EngineReport:
        self._prepare()
        self._report()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while self.s.remaining > 0:
                now = self.clock()
                self._launch(now, tasks)
                if self.s.remaining == 0:
                    break
                wake = self.queue.next_due() if len(tasks) < self.e.concurrency else None
                if not tasks:
                    if wake is None:
                        self._stalled()
                        break
                    await self.e.sleep(max(0.0, wake - now))
                    continue
                waiters: set[asyncio.Future[None]] = set(tasks)
                timer: asyncio.Future[None] | None = None
                if wake is not None:
                    timer = asyncio.ensure_future(self.e.sleep(max(0.0, wake - now)))
                    waiters.add(timer)
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if timer is not None and not timer.done():
                    timer.cancel()
                for task in [t for t in tasks if t in done]:
                    tasks.discard(task)
                    task.result()  # tasks handle their own errors; a raise here is a bug
                self._report()
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        self.stats.elapsed_seconds = self.clock() - self.start
        self.stats.final_rate_fraction = self.pacer.fraction
        return self._finish()

    def _finish(self) -> EngineReport:
        for o in self.ops:
            if o.final is None:
                raise AssertionError(f"operation {o.id!r} has no final result")
            if self.results[o.index] is not None:
                raise AssertionError(f"operation {o.id!r} has two results")
            self.results[o.index] = o.final
        results = tuple(r for r in self.results if r is not None)
        if len(results) != len(self.operations):
            raise AssertionError("an operation has no result")
        self._report()
        s, counts = self.stats, self.s.counts
        logger.info(
            "batch run: %d operations, %d succeeded, %d failed, %d gave up; %d batches, "
            "%d direct requests, %d items sent, %d member binds, %d throttled, %d retries, "
            "%.1fs",
            len(results),
            counts[Outcome.SUCCEEDED],
            counts[Outcome.FAILED],
            counts[Outcome.GAVE_UP],
            s.batches_sent,
            s.requests_sent,
            s.items_sent,
            s.member_binds,
            s.items_throttled,
            s.retries,
            s.elapsed_seconds,
        )
        return EngineReport(results=results, stats=s)

    def _launch(self, now: float, tasks: set[asyncio.Task[None]]) -> None:
        free = self.e.concurrency - len(tasks)
        size = self._batch_size() if self.e.use_batch else 1
        launched = False
        while free > 0:
            items = fill(self.queue, now, size)
            if not items:
                break
            self.in_flight_items += sum(len(i.ops) for i in items)
            coro = self._send_batch(items) if self.e.use_batch else self._send_direct(items[0])
            tasks.add(asyncio.ensure_future(coro))
            free -= 1
            launched = True
        if launched:
            self._report()

    def _batch_size(self) -> int:
        """Batches shrink when the paced write rate is low (after 429s, or a small budget),
        so one batch fits what the API will take: at most two bursts of writes."""
        pacer = self.pacer
        fits = math.ceil(2 * pacer.write_rate * pacer.config.burst_seconds)
        return max(1, min(self.e.batch_size, fits))

    def _stalled(self) -> None:
        logger.error("batch engine stalled with %d operations unsettled", self.s.remaining)
        self.s.fail_unsettled(self.ops, "internal error: engine stalled")

    def _report(self) -> None:
        if self.progress is None:
            return
        counts = self.s.counts
        try:
            self.progress(
                Progress(
                    total=len(self.operations),
                    done=sum(counts.values()),
                    succeeded=counts[Outcome.SUCCEEDED],
                    failed=counts[Outcome.FAILED],
                    gave_up=counts[Outcome.GAVE_UP],
                    throttled=self.stats.items_throttled,
                    in_flight=self.in_flight_items,
                )
            )
        except Exception:
            logger.exception("progress callback failed")

    # -- sending ------------------------------------------------------------------------

    async def _guarded(self, items: Sequence[Item], send: Awaitable[None]) -> None:
        try:
            await send
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never drop an operation, even on a bug
            logger.exception("internal error while sending %d request(s)", len(items))
            self.s.fail_unsettled(
                (o for item in items for o in item.ops), f"internal error: {exc!r}"
            )
        finally:
            self.in_flight_items -= sum(len(i.ops) for i in items)

    async def _send_batch(self, items: list[Item]) -> None:
        await self._guarded(items, self.sender.batch(items))

    async def _send_direct(self, item: Item) -> None:
        await self._guarded([item], self.sender.direct(item))
