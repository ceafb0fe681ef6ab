"""Settling operations: their final results, retries and what their answers mean.

Where it sits in the flow: the run loop (``run.py``) sends items through ``send.py``;
``batch_answer.py`` reads a batch's answer item by item; each item's non-429 answer comes
here, to :meth:`Settler.settle`, which applies the outcome rules (``verdicts.py``): an
operation's own request is settled here, a coalesced bind in ``bind.py``, a conflict's
read-back in ``readback.py``; "does not exist" about an object created in this run is
retried by ``replication.py``. A final result releases the operation's dependants into
the ready queue (``scheduler.py``) or settles them the same way (a cascade); a retry puts
the operation back into the queue, due after its wait, within the run's bounds.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from typing import Any

from shared.webapi.engine.bind import settle_bind
from shared.webapi.engine.readback import settle_readback
from shared.webapi.engine.replication import record_created, reference_created, replication_retry
from shared.webapi.engine.report import EngineStats
from shared.webapi.engine.rules import http_error
from shared.webapi.engine.scheduler import ReadyQueue
from shared.webapi.engine.state import Item, Kind, Op, Phase
from shared.webapi.engine.verdicts import Single, single_verdict
from shared.webapi.operations import Outcome, Result
from shared.webapi.response import error_code, error_message
from shared.webapi.retry import RetryPolicy, parse_retry_after
from shared.webapi.timing import Clock

__all__ = ["MAX_THROTTLED_SENDS", "Settler"]

logger = logging.getLogger("shared.webapi.engine")

MAX_THROTTLED_SENDS = 50  # per operation; the run's time bound usually ends it first


class Settler:
    """Owns the operations' states; the run loop feeds it answers."""

    def __init__(
        self,
        *,
        queue: ReadyQueue,
        stats: EngineStats,
        policy: RetryPolicy,
        clock: Clock,
        rng: random.Random,
        start: float,
        replication_seconds: float,
        remaining: int,
    ) -> None:
        self.queue = queue
        self.stats = stats
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.start = start
        self.replication_seconds = replication_seconds
        self.remaining = remaining
        self.counts = {Outcome.SUCCEEDED: 0, Outcome.FAILED: 0, Outcome.GAVE_UP: 0}
        self.created: set[str] = set()  # ids and userPrincipalNames created in this run

    # -- final results ----------------------------------------------------------------

    def finalize(
        self,
        o: Op,
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
        if outcome is Outcome.SUCCEEDED:
            self._release(o)
            return
        if outcome is Outcome.FAILED and status == 404 and o.prep.method == "GET":
            logger.debug("operation %r found nothing: %s", o.id, error)  # an answer, not a fault
        elif outcome is Outcome.FAILED:
            logger.warning("operation %r failed: %s", o.id, error)
        else:
            logger.warning("operation %r gave up: %s", o.id, error)
        self._cascade(o)

    def _release(self, o: Op) -> None:
        """``o`` succeeded: dependants whose dependencies all succeeded become ready."""
        now = self.clock()
        for dep in o.dependants:
            if dep.prep.op.reference_from == o.id:
                reference_created(dep, o)
            dep.waiting -= 1
            if dep.waiting == 0 and dep.final is None:
                dep.after_post = any(d.prep.method == "POST" or d.after_post for d in dep.deps)
                dep.not_before = max(dep.not_before, now)
                self.queue.push(dep)

    def _cascade(self, root: Op) -> None:
        """Settle, with the root's error, everything that depends on ``root`` (iteratively):
        failed when the root failed for good, gave up when the root only gave up (a later
        run may apply both)."""
        error = root.final.error if root.final is not None else None
        outcome = (
            Outcome.GAVE_UP
            if root.final is not None and root.final.outcome is Outcome.GAVE_UP
            else Outcome.FAILED
        )
        stack = [(root, d) for d in root.dependants]
        while stack:
            parent, dep = stack.pop()
            if dep.final is not None:
                continue
            dep.final = Result(
                operation_id=dep.id,
                outcome=outcome,
                status=424,
                body=None,
                attempts=dep.attempts,
                error=f"dependency {parent.id!r} did not succeed: "
                + (str(error) if parent is root else f"{root.id!r} did not succeed: {error}"),
                error_code="failedDependency",
            )
            self.remaining -= 1
            self.counts[outcome] += 1
            stack.extend((dep, d) for d in dep.dependants)

    def fail_unsettled(self, ops: Iterable[Op], error: str) -> None:
        for o in ops:
            if o.final is None:
                self.finalize(o, Outcome.FAILED, error=error)

    # -- retries ------------------------------------------------------------------------

    def schedule(self, o: Op, wait: float) -> None:
        """Put ``o`` back into the ready queue, due after ``wait`` (none without waits)."""
        now = self.clock()
        o.not_before = max(o.not_before, now + (wait if self.policy.wait else 0.0))
        self.queue.push(o)

    def retry(
        self,
        o: Op,
        *,
        status: int | None,
        error: str,
        delay: float | None,
        body: Any = None,
        code: str | None = None,
    ) -> None:
        """Send ``o`` again after ``delay`` (None: backoff), or give up."""
        if o.final is not None:
            return
        o.last_status, o.last_error, o.last_body, o.last_code = status, error, body, code
        now = self.clock()
        if status == 429:
            # Being throttled is not the operation's fault: a 429 does not use up one of its
            # attempts (others may share the budget), only time and MAX_THROTTLED_SENDS.
            o.throttles += 1
        if o.phase is Phase.READBACK:
            counted = o.readback_sends
        else:
            counted = o.attempts - o.throttles - o.free_sends
        wait = self.policy.delay(max(1, counted), delay, self.rng)
        if o.throttles > MAX_THROTTLED_SENDS or not self.policy.allows(
            counted, now - self.start, wait
        ):
            self.finalize(
                o,
                Outcome.GAVE_UP,
                status=status,
                body=body,
                error=f"gave up after {o.attempts} attempt(s): {error}",
                code=code,
                outcome_unknown=o.unknown,
            )
            return
        self.schedule(o, wait)

    def lost(self, o: Op, reason: str, *, unknown: bool, retry_after: float | None) -> None:
        """No usable answer for ``o``: resend when safe, else report the unknown outcome."""
        if o.final is not None:
            return
        if unknown and o.phase is Phase.SEND:
            o.unknown = True  # reported on a final failure: it may have been applied
            o.maybe_applied = True
            if not o.prep.resendable and o.prep.op.idempotency is None:
                self.finalize(
                    o,
                    Outcome.FAILED,
                    status=o.last_status,
                    error=f"outcome unknown ({reason}); a {o.prep.method} without "
                    "CreateIdentity is not resent",
                    code="outcomeUnknown",
                    outcome_unknown=True,
                )
                return
        self.retry(o, status=None, error=reason, delay=retry_after)

    def throttled(self, item: Item, wait: float, body: Any) -> None:
        """An item answered 429: retry its operations after ``wait``. A 429 inside a batch
        does not prove the write was not applied: resends must be idempotent."""
        write = item.kind is not Kind.READBACK and item.ops[0].prep.method != "GET"
        for o in item.ops:
            if write:
                o.maybe_applied = True
            self.retry(
                o,
                status=429,
                error="throttled (HTTP 429)",
                delay=wait,
                body=body,
                code=error_code(body),
            )

    # -- answers ------------------------------------------------------------------------

    def settle(self, item: Item, status: int, headers: Any, body: Any) -> None:
        """Settle the operations of ``item`` from a non-429 answer."""
        if item.kind is Kind.READBACK:
            settle_readback(self, item.ops[0], status, headers, body)
        elif item.coalesced:
            settle_bind(self, item, status, headers, body)
        else:
            self._single(item.ops[0], status, headers, body)

    def _single(self, o: Op, status: int, headers: Any, body: Any) -> None:
        """Settle ``o`` from the answer to its own request (the rules: ``verdicts.py``)."""
        if o.final is not None:
            return
        verdict = single_verdict(
            status,
            body,
            method=o.prep.method,
            maybe_applied=o.maybe_applied,
            has_identity=o.prep.op.idempotency is not None,
        )
        if verdict is Single.SUCCEEDED:
            if o.prep.method == "POST":
                record_created(self.created, body)
            self.finalize(o, Outcome.SUCCEEDED, status=status, body=body)
        elif verdict is Single.RESEND:
            self.retry(o, status=status, error=http_error(status, body), delay=0.0)
        elif verdict is Single.TRANSIENT:
            self._transient(o, status, headers, body)
        elif verdict is Single.ALREADY_MEMBER:
            self.finalize(o, Outcome.SUCCEEDED, status=status, body=body, resolved_conflict=True)
        elif verdict is Single.DELETED_EARLIER:
            logger.info(
                "operation %r: DELETE answered 404 after an earlier send whose outcome was "
                "unknown: it was applied then",
                o.id,
            )
            self.finalize(o, Outcome.SUCCEEDED, status=status, body=body, resolved_conflict=True)
        elif verdict is Single.READ_BACK:
            self._start_read_back(o, status, body)
        elif verdict is Single.NOT_FOUND and replication_retry(self, [o], status, body):
            pass
        else:
            self.finalize(
                o,
                Outcome.FAILED,
                status=status,
                body=body,
                error=http_error(status, body),
                code=error_code(body),
            )

    def _transient(self, o: Op, status: int, headers: Any, body: Any) -> None:
        """A 5xx: resend when safe (it may have been applied), else the outcome is unknown."""
        code = error_code(body)
        reason = f"HTTP {status}" + (f" {code}" if code else "")
        if not o.prep.resendable:
            self.lost(o, reason, unknown=True, retry_after=parse_retry_after(headers))
            return
        o.maybe_applied = True
        self.retry(
            o,
            status=status,
            error=f"{reason}: {error_message(body)}",
            delay=parse_retry_after(headers),
            body=body,
            code=code,
        )

    def _start_read_back(self, o: Op, status: int, body: Any) -> None:
        """A create conflict: read the object back (``readback.py``) before deciding."""
        o.phase = Phase.READBACK
        o.conflict = (status, body)
        o.replication_since = None
        o.replication_tries = 0
        self.schedule(o, 0.0)
