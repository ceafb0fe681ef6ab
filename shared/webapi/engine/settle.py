"""Settling operations from the API's answers: the engine's outcome rules.

- 2xx → succeeded; its dependants become ready.
- 429 → retried after Retry-After (never earlier), not counted as an attempt (time-bound).
  A 429 inside a batch does not prove the write was not applied, so what is resent must be
  idempotent: a member add's "already exist" and a DELETE's 404 then mean done, a create's
  conflict is read back. A POST without CreateIdentity is resent too (Graph documents a 429
  as not processed; such POSTs are not planned by the jobs).
- 500/502/503/504 → retried when the request is safe to resend, else reported failed with
  ``outcome_unknown`` (a POST without CreateIdentity may have been applied).
- Member add "already exist" → succeeded (``resolved_conflict``); a DELETE answered 404
  after an earlier send whose outcome was unknown (or was 429'd: Graph may have applied it)
  → succeeded.
- A create conflict with a CreateIdentity → read back (``readback.py``).
- "Does not exist" for an operation that touches an object created earlier in this run (it
  depends on a POST that succeeded, or its URL or reference names a created object) →
  retried with backoff within ``replication_seconds``, then failed with the API's error.
- Anything else → failed with the API's error. A failure fails every operation that
  depends on it (status 424, code ``failedDependency``, naming the root and its error); a
  give-up makes them give up the same way (they may all succeed on a later run).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from shared.errors import UnsafeRequestError
from shared.webapi.engine.readback import matches
from shared.webapi.engine.report import EngineStats
from shared.webapi.engine.rules import (
    TRANSIENT_5XX,
    does_not_exist,
    is_conflict,
    references_exist,
)
from shared.webapi.engine.scheduler import ReadyQueue
from shared.webapi.engine.state import Item, Kind, Op, Phase
from shared.webapi.operations import Outcome, Result
from shared.webapi.response import error_code, error_message
from shared.webapi.retry import RetryPolicy, parse_retry_after
from shared.webapi.timing import Clock
from shared.webapi.urls import directory_object_url

__all__ = ["MAX_REPLICATION_TRIES", "MAX_THROTTLED_SENDS", "Settler"]

logger = logging.getLogger("shared.webapi.engine")

MAX_THROTTLED_SENDS = 50  # per operation; the run's time bound usually ends it first
MAX_REPLICATION_TRIES = 32  # per operation; the replication bound usually ends it first


def _http_error(status: int, body: Any) -> str:
    code = error_code(body)
    return f"HTTP {status}" + (f" {code}" if code else "") + f": {error_message(body)}"


def _keys(op: Op) -> Iterable[str]:
    """Ids and names an operation touches: its URL's segments and its member reference."""
    for segment in urlsplit(op.prep.url).path.split("/"):
        if segment:
            yield segment.lower()
    if op.member is not None:
        yield op.member[1].rstrip("/").rsplit("/", 1)[-1].lower()


def _reference_created(dep: Op, create: Op) -> None:
    """Point ``dep``'s member reference at the object ``create`` made, by its id (on the
    same API base as the reference the caller gave)."""
    body = create.final.body if create.final is not None else None
    object_id = body.get("id") if isinstance(body, dict) else None
    given = dep.prep.op.body.get("@odata.id") if isinstance(dep.prep.op.body, dict) else None
    if not isinstance(object_id, str) or not isinstance(given, str) or given.count("/") < 2:
        return  # keep the caller's reference (it names the same object)
    base = given.rstrip("/").rsplit("/", 2)[0]
    try:
        url = directory_object_url(base, object_id)
    except (UnsafeRequestError, ValueError):
        return
    dep.body_override = {"@odata.id": url}
    if dep.member is not None:
        dep.member = (dep.member[0], url)


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
                _reference_created(dep, o)
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

    def _schedule(self, o: Op, wait: float) -> None:
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
        self._schedule(o, wait)

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

    # -- replication delay ---------------------------------------------------------------

    def eligible(self, o: Op) -> bool:
        """Whether ``o`` touches an object created earlier in this run."""
        return o.after_post or any(k in self.created for k in _keys(o))

    def record_created(self, body: Any) -> None:
        if isinstance(body, dict):
            for key in ("id", "userPrincipalName"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    self.created.add(value.lower())

    def replication_retry(
        self, ops: list[Op], status: int, body: Any, *, force: bool = False
    ) -> bool:
        """Retry ``ops`` (one request) after a "does not exist" answer while the replication
        bound allows; False when it does not (the caller then fails them or falls back)."""
        if not force and not all(self.eligible(o) for o in ops):
            return False
        now = self.clock()
        for o in ops:
            if o.replication_since is None:
                o.replication_since = now
        since = min(o.replication_since or now for o in ops)
        tries = max(o.replication_tries for o in ops) + 1
        delay = min(self.policy.cap, max(self.policy.base, 0.01) * 2.0 ** (tries - 1))
        delay *= self.rng.uniform(0.5, 1.0)
        if (
            tries > MAX_REPLICATION_TRIES
            or now + delay - since > self.replication_seconds
            or now + delay - self.start > self.policy.max_total_seconds
        ):
            return False
        error = f"{_http_error(status, body)} (retrying: replication delay)"
        for o in ops:
            o.replication_tries = tries
            if o.phase is Phase.SEND:
                o.free_sends += 1
            o.last_status, o.last_error, o.last_body = status, error, body
            self.stats.replication_retries += 1
            self._schedule(o, delay)
        return True

    # -- answers ------------------------------------------------------------------------

    def settle(self, item: Item, status: int, headers: Any, body: Any) -> None:
        """Settle the operations of ``item`` from a non-429 answer."""
        if item.kind is Kind.READBACK:
            self._readback(item.ops[0], status, headers, body)
        elif item.coalesced:
            self._members(item, status, headers, body)
        else:
            self._single(item.ops[0], status, headers, body)

    def _single(self, o: Op, status: int, headers: Any, body: Any) -> None:
        if o.final is not None:
            return
        code = error_code(body)
        if 200 <= status < 300:
            if o.prep.method == "POST":
                self.record_created(body)
            self.finalize(o, Outcome.SUCCEEDED, status=status, body=body)
        elif status == 424:  # never asked for (no dependsOn is sent): just try again
            self.retry(o, status=status, error=_http_error(status, body), delay=0.0)
        elif status in TRANSIENT_5XX:
            reason = f"HTTP {status}" + (f" {code}" if code else "")
            if not o.prep.resendable:
                self.lost(o, reason, unknown=True, retry_after=parse_retry_after(headers))
            else:
                o.maybe_applied = True
                self.retry(
                    o,
                    status=status,
                    error=f"{reason}: {error_message(body)}",
                    delay=parse_retry_after(headers),
                    body=body,
                    code=code,
                )
        elif references_exist(status, body):
            self.finalize(o, Outcome.SUCCEEDED, status=status, body=body, resolved_conflict=True)
        elif status == 404 and o.prep.method == "DELETE" and o.maybe_applied:
            logger.info(
                "operation %r: DELETE answered 404 after an earlier send whose outcome was "
                "unknown: it was applied then",
                o.id,
            )
            self.finalize(o, Outcome.SUCCEEDED, status=status, body=body, resolved_conflict=True)
        elif o.prep.op.idempotency is not None and is_conflict(status, body):
            o.phase = Phase.READBACK
            o.conflict = (status, body)
            o.replication_since = None
            o.replication_tries = 0
            self._schedule(o, 0.0)
        elif does_not_exist(status, body) and self.replication_retry([o], status, body):
            pass
        else:
            self.finalize(
                o,
                Outcome.FAILED,
                status=status,
                body=body,
                error=_http_error(status, body),
                code=code,
            )

    def _fallback(self, item: Item, status: int, body: Any) -> None:
        """The bind was refused as a whole: find the culprit with one add per member."""
        self.stats.bind_fallbacks += 1
        logger.info(
            "adding %d members to group %s in one request was refused (%s): adding them one by one",
            len(item.ops),
            item.group,
            _http_error(status, body),
        )
        for o in item.ops:
            if o.final is None:
                o.solo = True
                o.free_sends += 1
                self.retry(o, status=status, error=_http_error(status, body), delay=0.0)

    def _members(self, item: Item, status: int, headers: Any, body: Any) -> None:
        ops = [o for o in item.ops if o.final is None]
        if 200 <= status < 300:
            for o in ops:
                self.finalize(o, Outcome.SUCCEEDED, status=status, body=body)
        elif status in TRANSIENT_5XX or status == 424:
            for o in ops:
                o.maybe_applied = True
                self.retry(
                    o,
                    status=status,
                    error=_http_error(status, body),
                    delay=parse_retry_after(headers),
                    body=body,
                    code=error_code(body),
                )
        elif does_not_exist(status, body) and not references_exist(status, body):
            if not self.replication_retry(ops, status, body):
                self._fallback(item, status, body)
        elif status in (400, 404):
            # "already exist", a bad reference…: the bind is all-or-nothing, so one member
            # must not sink the others — find it with one add per member
            self._fallback(item, status, body)
        else:
            for o in ops:
                self.finalize(
                    o,
                    Outcome.FAILED,
                    status=status,
                    body=body,
                    error=_http_error(status, body),
                    code=error_code(body),
                )

    def _readback(self, o: Op, status: int, headers: Any, body: Any) -> None:
        if o.final is not None:
            return
        ident = o.prep.op.idempotency
        assert ident is not None
        assert o.conflict is not None
        c_status, c_body = o.conflict
        conflict = _http_error(c_status, c_body)
        if 200 <= status < 300:
            found = matches(ident, body)
            if len(found) == 1:
                self.stats.conflicts_resolved += 1
                self.record_created(found[0])
                logger.info(
                    "operation %r: create conflict resolved, the object with %s == %r exists",
                    o.id,
                    ident.attribute,
                    ident.value,
                )
                self.finalize(
                    o, Outcome.SUCCEEDED, status=status, body=found[0], resolved_conflict=True
                )
                return
            if not found and self.replication_retry([o], c_status, c_body, force=True):
                return  # a new object may not be readable yet
            what = "no object" if not found else f"{len(found)} objects"
            self.finalize(
                o,
                Outcome.FAILED,
                status=c_status,
                body=c_body,
                error=f"create conflicts with an existing object ({conflict}); read-back "
                f"{ident.path} found {what} with {ident.attribute} == {ident.value!r}",
                code=error_code(c_body) or "ObjectConflict",
            )
            return
        message = f"{conflict}; read-back GET {ident.path} answered {_http_error(status, body)}"
        if status in TRANSIENT_5XX:
            self.retry(o, status=c_status, error=message, delay=parse_retry_after(headers))
        elif does_not_exist(status, body) and self.replication_retry([o], status, body, force=True):
            pass
        else:
            code = error_code(c_body) or "ObjectConflict"
            self.finalize(o, Outcome.FAILED, status=c_status, body=c_body, error=message, code=code)
