"""Sending: one ``$batch`` (or one direct request) out, its answer handed on.

Where it sits in the flow: the run loop (``run.py``) takes the due items from the ready
queue (``scheduler.py``) and starts one :meth:`Sender.batch` (or :meth:`Sender.direct`
with ``use_batch=False``) per free slot. The sender waits for the tenant's pacer to admit
the request's cost, counts the sends, and sends it once (the engine does its own retries:
the client is told not to retry). Then:

- no answer (a transport error): the operations are lost — resent when safe, else
  reported with ``outcome_unknown`` (:meth:`Settler.lost`);
- nothing sent (no token, a refused URL): :meth:`Sender.not_sent`;
- a batch's answer: ``batch_answer.py`` reads it item by item;
- a direct answer: a 429 is retried after its wait, anything else is settled
  (``settle.py``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from shared import telemetry
from shared.errors import ApiTransportError, CredentialError, DaemonError
from shared.webapi.client import ApiClient
from shared.webapi.engine.batch_answer import batch_answered
from shared.webapi.engine.batches import batch_item, batch_payload
from shared.webapi.engine.report import EngineStats
from shared.webapi.engine.rules import limit_percentage, reports_usage, throttle_wait
from shared.webapi.engine.settle import Settler
from shared.webapi.engine.state import Item, Kind
from shared.webapi.operations import Cost, Outcome
from shared.webapi.pacing import TenantPacer
from shared.webapi.retry import RetryPolicy

__all__ = ["Sender", "batch_cost", "direct_content"]

logger = logging.getLogger("shared.webapi.engine")

_NO_RETRY = RetryPolicy.never()


def batch_cost(items: Sequence[Item]) -> Cost:
    """What a batch of ``items`` costs against the tenant's budget: the sum of its items."""
    return Cost(
        writes=sum(i.cost.writes for i in items),
        resource_units=sum(i.cost.resource_units for i in items),
    )


def direct_content(body: Any, headers: Mapping[str, str]) -> tuple[Any, bytes | None]:
    """(json, content) for a direct request: bytes as they are, a body with a non-JSON
    Content-Type encoded as UTF-8 text, anything else (None included) as JSON."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if isinstance(body, bytes | bytearray):
        return None, bytes(body)
    if body is not None and content_type and "json" not in content_type.lower():
        return None, body.encode("utf-8") if isinstance(body, str) else bytes(str(body), "utf-8")
    return body, None


class Sender:
    """Sends the items of one run and hands their answers to the settler."""

    def __init__(
        self,
        *,
        client: ApiClient,
        pacer: TenantPacer,
        policy: RetryPolicy,
        rng: random.Random,
        stats: EngineStats,
        settler: Settler,
    ) -> None:
        self.client = client
        self.pacer = pacer
        self.policy = policy
        self.rng = rng
        self.stats = stats
        self.settler = settler

    # -- one batch ----------------------------------------------------------------------

    async def batch(self, items: list[Item]) -> None:
        """Send ``items`` as one fully parallel ``$batch`` and settle what it answers."""
        sent_at = await self.pacer.acquire(batch_cost(items))
        ids = [str(n + 1) for n in range(len(items))]
        requests = []
        for item_id, item in zip(ids, items, strict=True):
            method, url, body, headers = item.request()
            requests.append(batch_item(item_id, method, url, body=body, headers=headers))
        payload = batch_payload(requests)
        self.count_sends(items)
        self.stats.batches_sent += 1
        try:
            with telemetry.span("daemon.batch", items=len(requests)) as span:
                answer = await self.client.request(
                    "POST", "/$batch", json=payload, idempotent=False, retry=_NO_RETRY
                )
                if span is not None:
                    span.set_attribute("status", answer.status)
        except ApiTransportError as exc:
            self.stats.transport_errors += 1
            self.stats.whole_batch_failures += 1
            logger.warning("batch of %d not answered: %s", len(items), exc)
            self.lose_all(items, str(exc), unknown=exc.outcome_unknown)
            return
        except DaemonError as exc:
            self.not_sent(items, exc)
            return
        batch_answered(self, items, ids, answer, sent_at)

    # -- one direct request ---------------------------------------------------------------

    async def direct(self, item: Item) -> None:
        """Send ``item`` as a request of its own (``use_batch=False``) and settle it."""
        sent_at = await self.pacer.acquire(item.cost)
        method, url, body, headers = item.request()
        json_body, content = direct_content(body, headers)
        self.count_sends([item])
        self.stats.requests_sent += 1
        try:
            with telemetry.span("daemon.batch", items=1, method=method) as span:
                answer = await self.client.request(
                    method,
                    url,
                    json=json_body,
                    content=content,
                    headers=headers,
                    idempotent=item.resendable,
                    retry=_NO_RETRY,
                )
                if span is not None:
                    span.set_attribute("status", answer.status)
        except ApiTransportError as exc:
            self.stats.transport_errors += 1
            self.lose_all([item], str(exc), unknown=exc.outcome_unknown)
            return
        except DaemonError as exc:
            self.not_sent([item], exc)
            return
        if answer.status == 429:
            wait = self.throttled_wait(item, answer.headers)
            self.throttle(wait, sent_at)
            self.settler.throttled(item, wait, answer.body)
            return
        self.pacer.answered(
            limit_percentage=limit_percentage(answer.headers),
            sent_at=sent_at,
            reports_usage=reports_usage(answer.headers),
        )
        self.settler.settle(item, answer.status, answer.headers, answer.body)

    # -- shared steps -------------------------------------------------------------------

    def count_sends(self, items: Sequence[Item]) -> None:
        """Count one send of each operation in ``items`` (a read-back is not an attempt)."""
        for item in items:
            if item.coalesced:
                self.stats.member_binds += 1
                self.stats.members_coalesced += len(item.ops)
            for o in item.ops:
                if item.kind is Kind.READBACK:
                    o.readback_sends += 1
                    self.stats.readbacks += 1
                    continue
                o.attempts += 1
                if o.attempts > 1:
                    self.stats.retries += 1
                self.stats.items_sent += 1

    def throttled_wait(self, item: Item, headers: Mapping[str, str]) -> float:
        """``item`` answered 429: count it, and how long it must wait (Retry-After, else
        the policy's backoff for its operations' attempts)."""
        self.stats.items_throttled += len(item.ops)
        attempt = max(o.attempts for o in item.ops)
        return throttle_wait(headers, attempt, self.policy, self.rng)

    def throttle(self, wait: float, sent_at: float) -> None:
        """The tenant was throttled: the pacer pauses every sender for ``wait``."""
        self.stats.tenant_pauses += 1
        self.stats.max_retry_after = max(self.stats.max_retry_after, wait)
        self.pacer.throttled(wait if self.policy.wait else 0.0, sent_at=sent_at)

    def not_sent(self, items: Sequence[Item], exc: DaemonError) -> None:
        """Nothing was sent. No token (Entra ID or Key Vault refused or unreachable) may work
        later: the operations give up (retryable: the job is redelivered); anything else
        (a refused URL, a tenant not allowed) never will: they fail."""
        outcome = Outcome.GAVE_UP if isinstance(exc, CredentialError) else Outcome.FAILED
        for item in items:
            for o in item.ops:
                if o.final is None:
                    self.settler.finalize(
                        o, outcome, error=f"not sent: {exc}", code=type(exc).__name__
                    )

    def lose_all(self, items: Sequence[Item], reason: str, *, unknown: bool) -> None:
        """No usable answer for any of ``items``: each operation is lost (resent when
        safe, else reported with ``outcome_unknown``)."""
        for item in items:
            for o in item.ops:
                self.settler.lost(o, reason, unknown=unknown, retry_after=None)
