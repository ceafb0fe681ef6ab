"""The batch engine: any number of operations in, exactly one final Result per operation out.

Flow of one run:

1. Validate (pure): a malformed operation fails alone and never reaches the network.
2. Group by dependency component. A component of at most 20 goes into one ``$batch`` in
   dependency order; a larger component, and everything when ``use_batch=False``, runs in
   *direct mode*: one request per operation, a dependant only after its dependencies
   succeeded (same guarantees, same retries).
3. Send batches concurrently (``concurrency`` in flight), each admitted by the tenant's
   :class:`TenantPacer` for its write and resource-unit cost.
4. Settle each item: 2xx → succeeded; 429/transient 5xx → retried in a new batch, never
   before its Retry-After; 424 → re-queued with its chain when the root is retried, failed
   when the root failed for good; other 4xx → failed with the API's error.
5. Whole-batch failures (non-200 envelope, transport error, malformed answer) re-queue the
   affected operations; a POST whose outcome is unknown is only resent when it has a
   :class:`CreateIdentity` (then an "already exists" answer is resolved by reading the
   object back), otherwise it is reported failed with ``outcome_unknown=True``.
6. Bounded: ``retry.max_attempts`` sends per operation and ``retry.max_total_seconds`` for
   the run, then ``gave_up``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.errors import ApiError, ApiTransportError, DaemonError
from shared.webapi.client import ApiClient
from shared.webapi.operations import (
    Cost,
    Operation,
    Outcome,
    Prepared,
    Result,
    estimate_cost,
    validate_operations,
)
from shared.webapi.pacing import PacingConfig, TenantPacer
from shared.webapi.packing import MAX_BATCH_SIZE, batch_item, batch_payload, components, pack
from shared.webapi.response import ApiResponse, error_code, error_message
from shared.webapi.retry import RetryPolicy, parse_retry_after
from shared.webapi.timing import Clock, Sleep, monotonic, real_sleep

__all__ = ["BatchEngine", "EngineReport", "EngineStats", "Progress", "ProgressCallback"]

logger = logging.getLogger(__name__)

_TRANSIENT_5XX = frozenset({500, 502, 503, 504})
_NO_RETRY = RetryPolicy.never()


MAX_THROTTLED_SENDS = 50  # per operation; the run's time bound usually ends it first


@dataclass
class EngineStats:
    """Counters of one run."""

    batches_sent: int = 0
    requests_sent: int = 0  # direct-mode requests
    items_sent: int = 0  # operations sent, batched or direct, counting resends
    items_throttled: int = 0  # 429 answers per operation (items and whole batches)
    retries: int = 0  # sends beyond an operation's first
    whole_batch_failures: int = 0  # non-200 envelopes, transport errors, malformed answers
    malformed_responses: int = 0
    transport_errors: int = 0
    readbacks: int = 0
    conflicts_resolved: int = 0
    tenant_pauses: int = 0
    max_retry_after: float = 0.0
    elapsed_seconds: float = 0.0
    final_rate_fraction: float = 0.0


@dataclass(frozen=True)
class Progress:
    """Counts passed to the progress callback."""

    total: int
    done: int
    succeeded: int
    failed: int
    gave_up: int
    throttled: int
    in_flight: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class EngineReport:
    """The results, in the order of the operations given, and the run's counters."""

    results: tuple[Result, ...]
    stats: EngineStats = field(default_factory=EngineStats)

    def by_id(self) -> dict[str, Result]:
        """Results keyed by operation id (the first one for a duplicated id)."""
        out: dict[str, Result] = {}
        for r in self.results:
            out.setdefault(r.operation_id, r)
        return out

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)


class _Unit:
    """What is scheduled together: a whole component (batch) or one operation (direct)."""

    __slots__ = ("batchable", "in_flight", "index", "isolate", "ops")

    def __init__(self, ops: list[_Op], batchable: bool) -> None:
        self.ops = ops
        self.batchable = batchable
        self.in_flight = False
        self.isolate = False
        self.index = min(o.prep.index for o in ops)

    def active(self) -> list[_Op]:
        return [o for o in self.ops if o.final is None]


class _Op:
    __slots__ = (
        "attempts",
        "dependants",
        "deps",
        "final",
        "last_body",
        "last_code",
        "last_error",
        "last_status",
        "not_before",
        "prep",
        "throttles",
        "unit",
        "unknown",
    )

    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        self.attempts = 0
        self.throttles = 0  # sends answered 429: bounded by time and MAX_THROTTLED_SENDS
        self.final: Result | None = None
        self.not_before = 0.0
        self.unknown = False
        self.last_status: int | None = None
        self.last_body: Any = None
        self.last_error: str | None = None
        self.last_code: str | None = None
        self.deps: list[_Op] = []
        self.dependants: list[_Op] = []
        self.unit: _Unit | None = None

    @property
    def id(self) -> str:
        return self.prep.id


def _is_conflict(status: int, body: Any) -> bool:
    if status not in (400, 409):
        return False
    code = (error_code(body) or "").lower()
    if code == "objectconflict":
        return True
    err = body.get("error") if isinstance(body, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    if isinstance(details, list) and any(
        isinstance(d, dict) and str(d.get("code", "")).lower() == "objectconflict" for d in details
    ):
        return True
    return "already exist" in error_message(body).lower()


def _references_exist(status: int, body: Any) -> bool:
    return status == 400 and "added object references already exist" in (
        error_message(body).lower()
    )


def _reports_usage(headers: httpx.Headers) -> bool:
    """Graph reports each request's cost; its silence about limits then means headroom."""
    return "x-ms-resource-unit" in headers


def _limit_percentage(headers: httpx.Headers) -> float | None:
    """``x-ms-throttle-limit-percentage`` in percent. Graph sends a fraction of the limit
    (0.8 = 80 %, up to 1.8 while throttled), only above 80 % use."""
    text = headers.get("x-ms-throttle-limit-percentage")
    if text is None:
        return None
    try:
        return float(text) * 100.0
    except ValueError:
        return None


class BatchEngine:
    """Applies operations through ``$batch`` (or one request each with ``use_batch=False``).

    Share one :class:`TenantPacer` (``pacer=``) among all engines of one tenant; otherwise
    each engine builds its own from ``pacing``. ``retry`` bounds each operation's sends
    (``max_attempts``) and the run's retrying time (``max_total_seconds``); with
    ``wait=False`` nothing waits for Retry-After or backoff (tests), the counting stays.
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
        dependent_batches_alone: bool = False,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.use_batch = use_batch
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy(max_attempts=6, max_total_seconds=900.0, base=1.0)
        self.clock = clock or monotonic
        self.sleep = sleep or real_sleep
        self.pacer = pacer or TenantPacer(pacing, clock=self.clock, sleep=self.sleep)
        self.dependent_batches_alone = dependent_batches_alone
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
        self.ops: list[_Op] = []
        self.units: list[_Unit] = []
        self.results: list[Result | None] = [None] * len(self.operations)
        self.remaining = 0
        self.in_flight_items = 0
        self.start = self.clock()
        self.counts = {Outcome.SUCCEEDED: 0, Outcome.FAILED: 0, Outcome.GAVE_UP: 0}
        self.held: list[_Op] | None = None  # failures whose cascade waits (see _settle_items)

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
            self.counts[Outcome.FAILED] += 1
        self.ops = [_Op(p) for p in prepared]
        by_id = {o.id: o for o in self.ops}
        for o in self.ops:
            o.deps = [by_id[d] for d in dict.fromkeys(o.prep.op.depends_on)]
            for d in o.deps:
                d.dependants.append(o)
        self.remaining = len(self.ops)
        if not self.e.use_batch:
            self.units = [_Unit([o], batchable=False) for o in self.ops]
        else:
            groups = components(
                [o.id for o in self.ops], {o.id: o.prep.op.depends_on for o in self.ops}
            )
            for group in groups:
                members = [by_id[i] for i in group]
                if len(members) <= self.e.batch_size:
                    self.units.append(_Unit(members, batchable=True))
                else:
                    logger.info(
                        "a dependency component of %d operations exceeds the batch limit "
                        "of %d: running it in direct mode",
                        len(members),
                        self.e.batch_size,
                    )
                    self.units.extend(_Unit([m], batchable=False) for m in members)
            self.units.sort(key=lambda u: u.index)
        for unit in self.units:
            for o in unit.ops:
                o.unit = unit

    # -- main loop ----------------------------------------------------------------------

    async def execute(self) -> EngineReport:
        self._prepare()
        self._report()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while self.remaining > 0:
                now = self.clock()
                self._launch(now, tasks)
                if self.remaining == 0:
                    break
                wake = self._next_wake() if len(tasks) < self.e.concurrency else None
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
            if self.results[o.prep.index] is not None:
                raise AssertionError(f"operation {o.id!r} has two results")
            self.results[o.prep.index] = o.final
        if any(r is None for r in self.results):
            raise AssertionError("an operation has no result")
        results = tuple(r for r in self.results if r is not None)
        if len(results) != len(self.operations):
            raise AssertionError("result count differs from operation count")
        self._report()
        s = self.stats
        logger.info(
            "batch run: %d operations, %d succeeded, %d failed, %d gave up; %d batches, "
            "%d direct requests, %d items sent, %d throttled, %d retries, %.1fs",
            len(results),
            self.counts[Outcome.SUCCEEDED],
            self.counts[Outcome.FAILED],
            self.counts[Outcome.GAVE_UP],
            s.batches_sent,
            s.requests_sent,
            s.items_sent,
            s.items_throttled,
            s.retries,
            s.elapsed_seconds,
        )
        return EngineReport(results=results, stats=s)

    def _ready(self, unit: _Unit, now: float) -> list[_Op] | None:
        if unit.in_flight:
            return None
        active = unit.active()
        if not active or max(o.not_before for o in active) > now:
            return None
        if not unit.batchable:
            for d in active[0].deps:
                if d.final is None or d.final.outcome is not Outcome.SUCCEEDED:
                    return None
        return active

    def _launch(self, now: float, tasks: set[asyncio.Task[None]]) -> None:
        free = self.e.concurrency - len(tasks)
        if free <= 0:
            return
        self._compact()
        batch_groups: list[list[_Op]] = []
        direct: list[_Op] = []
        size = self._batch_size()
        room = free * size
        for unit in self.units:
            if len(direct) >= free and (room <= 0 or not self.e.use_batch):
                break
            active = self._ready(unit, now)
            if active is None:
                continue
            if unit.batchable:
                if room > 0:
                    batch_groups.append(active)
                    room -= size if unit.isolate else len(active)
            elif len(direct) < free:
                direct.append(active[0])

        def alone(group: Sequence[_Op]) -> bool:
            unit = group[0].unit
            return unit is not None and (
                unit.isolate or (self.e.dependent_batches_alone and len(group) > 1)
            )

        # a dependency chain always travels whole, even when batches have shrunk
        size = max([size, *(len(group) for group in batch_groups)])
        batches = pack(batch_groups, size, alone=alone, max_batches=free)
        launch: list[tuple[int, list[_Op], bool]] = [
            (min(o.prep.index for o in b), b, True) for b in batches
        ]
        launch.extend((o.prep.index, [o], False) for o in direct)
        launch.sort(key=lambda t: t[0])
        for _, ops, batched in launch[:free]:
            for o in ops:
                if o.unit is not None:
                    o.unit.in_flight = True
            self.in_flight_items += len(ops)
            coro = self._send_batch(ops) if batched else self._send_direct(ops[0])
            tasks.add(asyncio.ensure_future(coro))
        if launch[:free]:
            self._report()

    def _batch_size(self) -> int:
        """Batches shrink when the paced write rate is low (after 429s, or a small budget),
        so one batch fits what the API will take: at most two bursts of writes."""
        pacer = self.pacer
        fits = math.ceil(2 * pacer.write_rate * pacer.config.burst_seconds)
        return max(1, min(self.e.batch_size, fits))

    def _compact(self) -> None:
        """Drop settled units (they gather at the front: units are launched in order)."""
        head = 0
        units = self.units
        while head < len(units) and not units[head].in_flight and not units[head].active():
            head += 1
        if head:
            del units[:head]
        if len(units) > 2 * self.remaining + 64:
            self.units = [u for u in units if u.in_flight or u.active()]

    def _next_wake(self) -> float | None:
        wake: float | None = None
        for unit in self.units:
            if unit.in_flight:
                continue
            active = unit.active()
            if not active:
                continue
            if not unit.batchable and any(
                d.final is None or d.final.outcome is not Outcome.SUCCEEDED for d in active[0].deps
            ):
                continue
            t = max(o.not_before for o in active)
            wake = t if wake is None else min(wake, t)
        return wake

    def _stalled(self) -> None:
        logger.error("batch engine stalled with %d operations unsettled", self.remaining)
        for o in self.ops:
            if o.final is None:
                self._finalize(o, Outcome.FAILED, error="internal error: engine stalled")

    def _report(self) -> None:
        if self.progress is None:
            return
        done = sum(self.counts.values())
        try:
            self.progress(
                Progress(
                    total=len(self.operations),
                    done=done,
                    succeeded=self.counts[Outcome.SUCCEEDED],
                    failed=self.counts[Outcome.FAILED],
                    gave_up=self.counts[Outcome.GAVE_UP],
                    throttled=self.stats.items_throttled,
                    in_flight=self.in_flight_items,
                )
            )
        except Exception:
            logger.exception("progress callback failed")

    # -- settling ---------------------------------------------------------------------

    def _finalize(
        self,
        o: _Op,
        outcome: Outcome,
        *,
        status: int | None = None,
        body: Any = None,
        error: str | None = None,
        code: str | None = None,
        resolved_conflict: bool = False,
        outcome_unknown: bool = False,
    ) -> None:
        if o.final is not None:
            raise AssertionError(f"operation {o.id!r} settled twice")
        o.final = Result(
            operation_id=o.id,
            outcome=outcome,
            status=status,
            body=body,
            attempts=o.attempts,
            error=error,
            error_code=code,
            resolved_conflict=resolved_conflict,
            outcome_unknown=outcome_unknown,
        )
        self.remaining -= 1
        self.counts[outcome] += 1
        if outcome is not Outcome.SUCCEEDED:
            if outcome is Outcome.FAILED:
                logger.warning("operation %r failed: %s", o.id, error)
            else:
                logger.warning("operation %r gave up: %s", o.id, error)
            if self.held is not None:
                self.held.append(o)
            else:
                self._cascade(o)

    def _cascade(self, o: _Op) -> None:
        """Fail the unsettled dependants of ``o``, which did not succeed."""
        error = o.final.error if o.final is not None else None
        for dep in o.dependants:
            if dep.final is None:
                self._finalize(
                    dep,
                    Outcome.FAILED,
                    status=424,
                    error=f"dependency {o.id!r} did not succeed: {error}",
                    code="failedDependency",
                )

    def _retry(
        self,
        o: _Op,
        *,
        status: int | None,
        error: str,
        delay: float | None,
        body: Any = None,
        code: str | None = None,
    ) -> None:
        """Schedule another send of ``o`` after ``delay`` (None: backoff), or give up."""
        if o.final is not None:
            return
        o.last_status, o.last_error, o.last_body, o.last_code = status, error, body, code
        now = self.clock()
        wait = self.policy.delay(o.attempts, delay, self.e.rng)
        if status == 429:
            # Being throttled is not the operation's fault: a 429 does not use up one of its
            # attempts (others may share the budget), only time and MAX_THROTTLED_SENDS.
            o.throttles += 1
        counted = o.attempts - o.throttles
        if o.throttles > MAX_THROTTLED_SENDS or not self.policy.allows(
            counted, now - self.start, wait
        ):
            self._finalize(
                o,
                Outcome.GAVE_UP,
                status=status,
                body=body,
                error=f"gave up after {o.attempts} attempt(s): {error}",
                code=code,
                outcome_unknown=o.unknown,
            )
            return
        o.not_before = max(o.not_before, now + (wait if self.policy.wait else 0.0))

    def _lost(self, o: _Op, reason: str, *, unknown: bool, retry_after: float | None) -> None:
        """No usable answer for ``o``: resend when safe, else report the unknown outcome."""
        if o.final is not None:
            return
        if unknown:
            o.unknown = True  # reported on a final failure: it may have been applied
        if unknown and not o.prep.resendable and o.prep.op.idempotency is None:
            self._finalize(
                o,
                Outcome.FAILED,
                status=o.last_status,
                error=f"outcome unknown ({reason}); a {o.prep.method} without "
                "CreateIdentity is not resent",
                code="outcomeUnknown",
                outcome_unknown=True,
            )
            return
        self._retry(o, status=None, error=reason, delay=retry_after)

    def _throttle(self, retry_after: float, sent_at: float) -> None:
        self.stats.tenant_pauses += 1
        self.stats.max_retry_after = max(self.stats.max_retry_after, retry_after)
        self.pacer.throttled(retry_after if self.policy.wait else 0.0, sent_at=sent_at)

    def _settle_answer(
        self,
        o: _Op,
        status: int,
        headers: httpx.Headers,
        body: Any,
        conflicts: list[tuple[_Op, int, Any]],
    ) -> None:
        """Settle ``o`` from a non-429, non-424 answer (item or direct response)."""
        code = error_code(body)
        if 200 <= status < 300:
            self._finalize(o, Outcome.SUCCEEDED, status=status, body=body)
        elif status in _TRANSIENT_5XX:
            reason = f"HTTP {status}" + (f" {code}" if code else "")
            if not o.prep.resendable:
                self._lost(o, reason, unknown=True, retry_after=parse_retry_after(headers))
            else:
                self._retry(
                    o,
                    status=status,
                    error=f"{reason}: {error_message(body)}",
                    delay=parse_retry_after(headers),
                    body=body,
                    code=code,
                )
        elif _references_exist(status, body):
            self._finalize(o, Outcome.SUCCEEDED, status=status, body=body, resolved_conflict=True)
        elif _is_conflict(status, body) and o.prep.op.idempotency is not None and o.unknown:
            conflicts.append((o, status, body))
        else:
            self._finalize(
                o,
                Outcome.FAILED,
                status=status,
                body=body,
                error=f"HTTP {status}" + (f" {code}" if code else "") + f": {error_message(body)}",
                code=code,
            )

    async def _resolve_conflicts(self, conflicts: list[tuple[_Op, int, Any]]) -> None:
        for o, status, body in conflicts:
            if o.final is None:
                await self._resolve_conflict(o, status, body)

    async def _resolve_conflict(self, o: _Op, status: int, body: Any) -> None:
        ident = o.prep.op.idempotency
        assert ident is not None
        self.stats.readbacks += 1
        conflict = f"HTTP {status}: {error_message(body)}"
        await self.pacer.acquire(estimate_cost("GET", ident.path))
        try:
            answer = await self.client.request("GET", ident.path, headers=ident.headers)
        except ApiError as exc:
            self._retry(o, status=status, error=f"{conflict}; read-back failed: {exc}", delay=None)
            return
        if not answer.ok:
            message = (
                f"{conflict}; read-back GET {ident.path} answered {answer.status}: "
                f"{answer.error_message}"
            )
            if answer.status in _TRANSIENT_5XX or answer.status == 429:
                self._retry(o, status=status, error=message, delay=None, body=body)
            else:
                self._finalize(o, Outcome.FAILED, status=status, body=body, error=message)
            return
        found = answer.body
        candidates = (
            found["value"]
            if isinstance(found, dict) and isinstance(found.get("value"), list)
            else [found]
        )
        matches = [c for c in candidates if ident.matches(c)]
        if len(matches) == 1:
            self.stats.conflicts_resolved += 1
            logger.info(
                "operation %r: create conflict resolved, the object with %s == %r exists "
                "(created by an earlier attempt)",
                o.id,
                ident.attribute,
                ident.value,
            )
            self._finalize(
                o, Outcome.SUCCEEDED, status=answer.status, body=matches[0], resolved_conflict=True
            )
            return
        what = "no object" if not matches else f"{len(matches)} objects"
        self._finalize(
            o,
            Outcome.FAILED,
            status=status,
            body=body,
            error=f"create conflicts with an existing object ({conflict}); read-back "
            f"{ident.path} found {what} with {ident.attribute} == {ident.value!r}",
            code=error_code(body) or "ObjectConflict",
        )

    # -- batch mode -----------------------------------------------------------------------

    async def _send_batch(self, ops: list[_Op]) -> None:
        try:
            await self._batch(ops)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never drop an operation, even on a bug
            logger.exception("internal error while running a batch")
            for o in ops:
                if o.final is None:
                    self._finalize(o, Outcome.FAILED, error=f"internal error: {exc!r}")
        finally:
            self.in_flight_items -= len(ops)
            for o in ops:
                if o.unit is not None:
                    o.unit.in_flight = False

    async def _batch(self, ops: list[_Op]) -> None:
        cost = Cost(
            writes=sum(o.prep.cost.writes for o in ops),
            resource_units=sum(o.prep.cost.resource_units for o in ops),
        )
        sent_at = await self.pacer.acquire(cost)
        ids = {o.id: str(i + 1) for i, o in enumerate(ops)}
        by_item = {ids[o.id]: o for o in ops}
        items = [
            batch_item(
                ids[o.id],
                o.prep.method,
                o.prep.url,
                body=o.prep.op.body,
                headers=o.prep.op.headers,
                depends_on=[ids[d.id] for d in o.deps if d.id in ids],
            )
            for o in ops
        ]
        payload = batch_payload(items)
        for o in ops:
            o.attempts += 1
            if o.attempts > 1:
                self.stats.retries += 1
        self.stats.batches_sent += 1
        self.stats.items_sent += len(ops)
        try:
            answer = await self.client.request(
                "POST", "/$batch", json=payload, idempotent=False, retry=_NO_RETRY
            )
        except ApiTransportError as exc:
            self.stats.transport_errors += 1
            self.stats.whole_batch_failures += 1
            logger.warning("batch of %d not answered: %s", len(ops), exc)
            for o in ops:
                self._lost(o, str(exc), unknown=exc.outcome_unknown, retry_after=None)
            return
        except DaemonError as exc:
            for o in ops:
                if o.final is None:
                    self._finalize(o, Outcome.FAILED, error=f"batch not sent: {exc}")
            return
        await self._batch_answered(ops, by_item, answer, sent_at)

    async def _batch_answered(
        self, ops: list[_Op], by_item: dict[str, _Op], answer: ApiResponse, sent_at: float
    ) -> None:
        status = answer.status
        rid = answer.request_id
        if status == 429:
            retry_after = parse_retry_after(answer.headers)
            wait = retry_after if retry_after is not None else self.policy.backoff(1, self.e.rng)
            self.stats.items_throttled += len(ops)
            self._throttle(wait, sent_at)
            for o in ops:
                self._retry(o, status=429, error="batch throttled (HTTP 429)", delay=wait)
            return
        if status != 200:
            self.stats.whole_batch_failures += 1
            reason = (
                f"batch answered HTTP {status}"
                + (f" {answer.error_code}" if answer.error_code else "")
                + f": {answer.error_message} (client-request-id {rid})"
            )
            logger.warning("%s", reason)
            self.pacer.answered(sent_at=sent_at)
            if status >= 500:
                retry_after = parse_retry_after(answer.headers)
                for o in ops:
                    self._lost(o, reason, unknown=True, retry_after=retry_after)
            elif status in (401, 403):
                for o in ops:
                    if o.final is None:
                        self._finalize(
                            o, Outcome.FAILED, status=status, error=reason, code=answer.error_code
                        )
            else:
                units = {id(o.unit): o.unit for o in ops if o.unit is not None}
                if len(units) > 1 or not all(u.isolate for u in units.values()):
                    for unit in units.values():
                        unit.isolate = True  # resend each component alone to find the culprit
                    for o in ops:
                        self._retry(o, status=status, error=reason, delay=0.0)
                else:
                    for o in ops:
                        if o.final is None:
                            self._finalize(
                                o,
                                Outcome.FAILED,
                                status=status,
                                error=reason,
                                code=answer.error_code,
                            )
            return
        parsed = self._parse(answer, by_item)
        if isinstance(parsed, str):
            self.stats.malformed_responses += 1
            self.stats.whole_batch_failures += 1
            reason = f"malformed batch response: {parsed} (client-request-id {rid})"
            logger.error("%s", reason)
            for o in ops:
                self._lost(o, reason, unknown=True, retry_after=None)
            return
        await self._settle_items(ops, parsed, answer, sent_at)

    def _parse(
        self, answer: ApiResponse, by_item: dict[str, _Op]
    ) -> dict[str, tuple[int, httpx.Headers, Any]] | str:
        if answer.json_problem:
            return answer.json_problem
        if "json" not in answer.content_type.lower():
            return f"content type {answer.content_type or 'missing'!r} is not JSON"
        body = answer.body
        if not isinstance(body, dict) or not isinstance(body.get("responses"), list):
            return "no 'responses' array"
        out: dict[str, tuple[int, httpx.Headers, Any]] = {}
        problems: list[str] = []
        for entry in body["responses"]:
            if not isinstance(entry, dict):
                problems.append("an entry is not an object")
                continue
            raw_id = entry.get("id")
            item_id = str(raw_id) if isinstance(raw_id, str | int) else None
            if item_id is None or item_id not in by_item:
                problems.append(f"unknown id {raw_id!r}")
                continue
            if item_id in out:
                problems.append(f"duplicate id {item_id!r}")
                continue
            status = entry.get("status")
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status < 600:
                problems.append(f"entry {item_id!r} has no valid status")
                continue
            raw_headers = entry.get("headers")
            headers = httpx.Headers(
                {str(k): str(v) for k, v in raw_headers.items()}
                if isinstance(raw_headers, dict)
                else {}
            )
            out[item_id] = (status, headers, entry.get("body"))
        missing = len(by_item) - len(out)
        if missing:
            problems.append(f"{missing} request(s) without a response")
        if problems:
            self.stats.malformed_responses += 1
            logger.error(
                "batch response (client-request-id %s) is partly malformed: %s",
                answer.request_id,
                "; ".join(problems[:5]),
            )
        return out

    async def _settle_items(
        self,
        ops: list[_Op],
        parsed: dict[str, tuple[int, httpx.Headers, Any]],
        answer: ApiResponse,
        sent_at: float,
    ) -> None:
        item_of = {o.id: str(i + 1) for i, o in enumerate(ops)}  # as numbered in _batch
        throttle: float | None = None
        percentage = _limit_percentage(answer.headers)
        reports_usage = _reports_usage(answer.headers)
        failed_dependency: list[_Op] = []
        throttled: list[_Op] = []
        conflicts: list[tuple[_Op, int, Any]] = []
        missing: list[_Op] = []
        self.held = []  # answers take precedence over cascades: cascade after settling them
        try:
            for o in ops:
                entry = parsed.get(item_of[o.id])
                if entry is None:
                    missing.append(o)
                    continue
                status, headers, body = entry
                p = _limit_percentage(headers)
                if p is not None:
                    percentage = p if percentage is None else max(percentage, p)
                reports_usage = reports_usage or _reports_usage(headers)
                if status == 424:
                    failed_dependency.append(o)
                elif status == 429:
                    self.stats.items_throttled += 1
                    retry_after = parse_retry_after(headers)
                    wait = (
                        retry_after
                        if retry_after is not None
                        else self.policy.backoff(o.attempts, self.e.rng)
                    )
                    throttle = wait if throttle is None else max(throttle, wait)
                    throttled.append(o)
                    self._retry(
                        o,
                        status=429,
                        error="throttled (HTTP 429)",
                        delay=wait,
                        body=body,
                        code=error_code(body),
                    )
                else:
                    self._settle_answer(o, status, headers, body, conflicts)
        finally:
            held, self.held = self.held, None
        # answers first, then cascades of their failures (to operations that are still
        # unsettled: 424s, unanswered ones), then the unanswered, then the 424s
        for o in held or []:
            self._cascade(o)
        for o in missing:
            self._lost(
                o,
                f"no response for it in the batch (client-request-id {answer.request_id})",
                unknown=True,
                retry_after=None,
            )
        for o in failed_dependency:
            if o.final is None:  # the failed root will be retried: go again with the chain
                self._retry(o, status=424, error="a dependency failed (HTTP 424)", delay=0.0)
        if throttle is not None:
            # throttled together, retried together: none before the largest Retry-After
            later = self.clock() + (throttle if self.policy.wait else 0.0)
            for o in throttled:
                if o.final is None:
                    o.not_before = max(o.not_before, later)
            self._throttle(throttle, sent_at)
        else:
            self.pacer.answered(
                limit_percentage=percentage, sent_at=sent_at, reports_usage=reports_usage
            )
        await self._resolve_conflicts(conflicts)

    # -- direct mode ----------------------------------------------------------------------

    async def _send_direct(self, o: _Op) -> None:
        try:
            await self._direct(o)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never drop an operation, even on a bug
            logger.exception("internal error while sending operation %r", o.id)
            if o.final is None:
                self._finalize(o, Outcome.FAILED, error=f"internal error: {exc!r}")
        finally:
            self.in_flight_items -= 1
            if o.unit is not None:
                o.unit.in_flight = False

    async def _direct(self, o: _Op) -> None:
        sent_at = await self.pacer.acquire(o.prep.cost)
        body = o.prep.op.body
        headers = dict(o.prep.op.headers)
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        json_body: Any = None
        content: bytes | None = None
        if isinstance(body, bytes | bytearray):
            content = bytes(body)
        elif body is not None and content_type and "json" not in content_type.lower():
            content = body.encode("utf-8") if isinstance(body, str) else bytes(str(body), "utf-8")
        else:
            json_body = body
        o.attempts += 1
        if o.attempts > 1:
            self.stats.retries += 1
        self.stats.requests_sent += 1
        self.stats.items_sent += 1
        try:
            answer = await self.client.request(
                o.prep.method,
                o.prep.url,
                json=json_body,
                content=content,
                headers=headers,
                idempotent=o.prep.resendable,
                retry=_NO_RETRY,
            )
        except ApiTransportError as exc:
            self.stats.transport_errors += 1
            self._lost(o, str(exc), unknown=exc.outcome_unknown, retry_after=None)
            return
        except DaemonError as exc:
            self._finalize(o, Outcome.FAILED, error=f"not sent: {exc}")
            return
        if answer.status == 429:
            self.stats.items_throttled += 1
            retry_after = parse_retry_after(answer.headers)
            wait = (
                retry_after
                if retry_after is not None
                else self.policy.backoff(o.attempts, self.e.rng)
            )
            self._throttle(wait, sent_at)
            self._retry(o, status=429, error="throttled (HTTP 429)", delay=wait, body=answer.body)
            return
        self.pacer.answered(
            limit_percentage=_limit_percentage(answer.headers),
            sent_at=sent_at,
            reports_usage=_reports_usage(answer.headers),
        )
        conflicts: list[tuple[_Op, int, Any]] = []
        self._settle_answer(o, answer.status, answer.headers, answer.body, conflicts)
        await self._resolve_conflicts(conflicts)
