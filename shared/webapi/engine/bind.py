"""A coalesced member bind's answer: done, retried, replication delay, or one by one.

Where it sits: the scheduler coalesces member adds to one group into one
``PATCH /groups/{id}`` with ``members@odata.bind`` (``coalesce.py``); the settler
(``settle.py``) hands that PATCH's non-429 answer to :func:`settle_bind`. The PATCH is
all-or-nothing (https://learn.microsoft.com/graph/api/group-update), so the verdict
(``verdicts.py``, :class:`~shared.webapi.engine.verdicts.Bind`) applies to every member
alike — except a refusal that one member may cause ("already exist", a missing or
malformed reference): then each member is resent alone (the fallback), where an
"already exist" means done and a bad reference fails only its own operation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.webapi.engine.replication import replication_retry
from shared.webapi.engine.rules import http_error
from shared.webapi.engine.state import Item
from shared.webapi.engine.verdicts import Bind, bind_verdict
from shared.webapi.operations import Outcome
from shared.webapi.response import error_code
from shared.webapi.retry import parse_retry_after

if TYPE_CHECKING:
    from shared.webapi.engine.settle import Settler

__all__ = ["fall_back", "settle_bind"]

logger = logging.getLogger("shared.webapi.engine")


def settle_bind(s: Settler, item: Item, status: int, headers: Any, body: Any) -> None:
    """Settle the member adds of a coalesced bind from its non-429 answer."""
    ops = [o for o in item.ops if o.final is None]
    verdict = bind_verdict(status, body)
    if verdict is Bind.SUCCEEDED:
        for o in ops:
            s.finalize(o, Outcome.SUCCEEDED, status=status, body=body)
    elif verdict is Bind.RETRY:
        for o in ops:
            o.maybe_applied = True
            s.retry(
                o,
                status=status,
                error=http_error(status, body),
                delay=parse_retry_after(headers),
                body=body,
                code=error_code(body),
            )
    elif verdict is Bind.NOT_FOUND:
        if not replication_retry(s, ops, status, body):
            fall_back(s, item, status, body)
    elif verdict is Bind.FALL_BACK:
        fall_back(s, item, status, body)
    else:
        for o in ops:
            s.finalize(
                o,
                Outcome.FAILED,
                status=status,
                body=body,
                error=http_error(status, body),
                code=error_code(body),
            )


def fall_back(s: Settler, item: Item, status: int, body: Any) -> None:
    """The bind was refused as a whole: find the culprit with one add per member (never
    coalesced again; the refused send does not count as an attempt)."""
    s.stats.bind_fallbacks += 1
    logger.info(
        "adding %d members to group %s in one request was refused (%s): adding them one by one",
        len(item.ops),
        item.group,
        http_error(status, body),
    )
    for o in item.ops:
        if o.final is None:
            o.solo = True
            o.free_sends += 1
            s.retry(o, status=status, error=http_error(status, body), delay=0.0)
