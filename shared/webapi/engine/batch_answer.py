"""A ``$batch`` answer turned into per-item decisions.

Where it sits in the flow: the sender (``send.py``) posts one batch and hands its answer
here. First the envelope (:func:`~shared.webapi.engine.verdicts.envelope_verdict`):

- 429: the batch was refused as a whole, nothing in it applied — every operation is
  retried after the wait, and the tenant pauses;
- 5xx: the outcome is unknown — the operations are lost (resent when safe);
- 401/403, or a batch of requests already sent alone: they fail;
- any other non-200: each request is resent alone to find the one refused;
- 200: the answer is parsed (``batches.py``); an unusable one loses every operation, a
  missing item answer loses that item. Each item's 429 is retried after the largest
  Retry-After of the batch (throttled together, retried together); every other item
  answer is settled (``settle.py``). The answers' throttling headers pace the tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.webapi.engine.batches import ItemAnswer, parse_batch
from shared.webapi.engine.rules import limit_percentage, reports_usage, throttle_wait
from shared.webapi.engine.state import Item, Op
from shared.webapi.engine.verdicts import Envelope, envelope_verdict
from shared.webapi.operations import Outcome
from shared.webapi.response import ApiResponse
from shared.webapi.retry import parse_retry_after

if TYPE_CHECKING:
    from shared.webapi.engine.send import Sender

__all__ = ["PacingSignals", "batch_answered", "envelope_reason"]

logger = logging.getLogger("shared.webapi.engine")


@dataclass
class PacingSignals:
    """What a batch's answers say about the tenant's budget: the highest
    ``x-ms-throttle-limit-percentage`` (in percent) of the envelope and its items, and
    whether any of them reports its resource-unit cost."""

    percentage: float | None = None
    usage: bool = False

    def add(self, headers: Mapping[str, str]) -> None:
        """Take one answer's headers into account."""
        p = limit_percentage(headers)
        if p is not None:
            self.percentage = p if self.percentage is None else max(self.percentage, p)
        self.usage = self.usage or reports_usage(headers)


def envelope_reason(answer: ApiResponse) -> str:
    """Why a non-200 envelope fails its operations: status, error code, message and the
    client-request-id to find it in Graph's logs."""
    return (
        f"batch answered HTTP {answer.status}"
        + (f" {answer.error_code}" if answer.error_code else "")
        + f": {answer.error_message} (client-request-id {answer.request_id})"
    )


def batch_answered(
    tx: Sender, items: list[Item], ids: list[str], answer: ApiResponse, sent_at: float
) -> None:
    """Settle or re-queue every operation of the batch ``items`` (item ``ids[n]`` is
    ``items[n]``) from its answer; ``sent_at``: when the pacer admitted it."""
    ops = [o for item in items for o in item.ops]
    verdict = envelope_verdict(answer.status, all_isolated=all(o.isolate for o in ops))
    if verdict is Envelope.THROTTLED:
        _batch_throttled(tx, ops, answer, sent_at)
    elif verdict is Envelope.ANSWERED:
        _batch_parsed(tx, items, ids, answer, sent_at)
    else:
        _batch_refused(tx, ops, answer, sent_at, verdict)


def _batch_throttled(tx: Sender, ops: list[Op], answer: ApiResponse, sent_at: float) -> None:
    """The batch as a whole was refused with 429: nothing in it was applied."""
    wait = throttle_wait(answer.headers, 1, tx.policy, tx.rng)
    tx.stats.items_throttled += len(ops)
    tx.throttle(wait, sent_at)
    for o in ops:
        tx.settler.retry(o, status=429, error="batch throttled (HTTP 429)", delay=wait)


def _batch_refused(
    tx: Sender, ops: list[Op], answer: ApiResponse, sent_at: float, verdict: Envelope
) -> None:
    """A non-200, non-429 envelope: lost (5xx), failed, or each request resent alone."""
    status = answer.status
    tx.stats.whole_batch_failures += 1
    reason = envelope_reason(answer)
    logger.warning("%s", reason)
    tx.pacer.answered(sent_at=sent_at)
    if verdict is Envelope.LOST:
        retry_after = parse_retry_after(answer.headers)
        for o in ops:
            tx.settler.lost(o, reason, unknown=True, retry_after=retry_after)
    elif verdict is Envelope.REFUSED:
        for o in ops:
            if o.final is None:
                tx.settler.finalize(
                    o, Outcome.FAILED, status=status, error=reason, code=answer.error_code
                )
    else:
        for o in ops:  # resend each request alone to find the one refused
            o.isolate = True
            tx.settler.retry(o, status=status, error=reason, delay=0.0)


def _batch_parsed(
    tx: Sender, items: list[Item], ids: list[str], answer: ApiResponse, sent_at: float
) -> None:
    """A 200 envelope: parse it, then settle item by item (or lose all when unusable)."""
    rid = answer.request_id
    parsed = parse_batch(answer, ids)
    if isinstance(parsed, str):
        tx.stats.malformed_responses += 1
        tx.stats.whole_batch_failures += 1
        reason = f"malformed batch response: {parsed} (client-request-id {rid})"
        logger.error("%s", reason)
        tx.lose_all(items, reason, unknown=True)
        return
    out, problems = parsed
    if problems:
        tx.stats.malformed_responses += 1
        logger.error(
            "batch response (client-request-id %s) is partly malformed: %s",
            rid,
            "; ".join(problems[:5]),
        )
    _items_answered(tx, items, ids, out, answer, sent_at)


def _items_answered(
    tx: Sender,
    items: list[Item],
    ids: list[str],
    out: Mapping[str, ItemAnswer],
    answer: ApiResponse,
    sent_at: float,
) -> None:
    """Settle each item from its own answer, in the batch's order; 429s wait together."""
    signals = PacingSignals()
    signals.add(answer.headers)
    throttle: float | None = None
    throttled: list[tuple[Item, Any]] = []
    missing: list[Item] = []
    for item_id, item in zip(ids, items, strict=True):
        entry = out.get(item_id)
        if entry is None:
            missing.append(item)
            continue
        item_status, headers, body = entry
        signals.add(headers)
        if item_status == 429:
            wait = tx.throttled_wait(item, headers)
            throttle = wait if throttle is None else max(throttle, wait)
            throttled.append((item, body))
        else:
            tx.settler.settle(item, item_status, headers, body)
    if missing:
        reason = f"no response for it in the batch (client-request-id {answer.request_id})"
        tx.lose_all(missing, reason, unknown=True)
    if throttle is None:
        tx.pacer.answered(
            limit_percentage=signals.percentage, sent_at=sent_at, reports_usage=signals.usage
        )
        return
    # throttled together, retried together: none before the largest Retry-After
    for item, body in throttled:
        tx.settler.throttled(item, throttle, body)
    tx.throttle(throttle, sent_at)
