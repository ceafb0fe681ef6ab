"""Idempotent creates: a create conflict is resolved by reading the object back.

A POST create that answers "already exists" (ObjectConflict) may have been made by an
earlier attempt whose answer was lost, by a 429'd attempt that Graph applied anyway, or by
another run creating the same object at the same moment. So a conflict is **always** read
back (also on a first attempt): the operation's :class:`CreateIdentity` names a GET and the
attribute to match. Exactly one match → the object exists, the create counts as done
(``resolved_conflict``); none → the conflict is with another object, a permanent failure —
but only once the read-back still finds nothing after the replication bound (a new object
may not be readable by ``$filter`` for a while, "Designing for Eventual Consistency for
Microsoft Entra":
https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra);
several → ambiguous, a failure naming the count.

Where it sits: the settler (``settle.py``) turns an operation into a read-back when its
create answers a conflict; the scheduler then sends the GET as a ``readback`` item, and
:func:`settle_readback` settles the operation from that GET's answer (the rules in
``verdicts.py``, :class:`~shared.webapi.engine.verdicts.ReadBack`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.webapi.engine.replication import record_created, replication_retry
from shared.webapi.engine.rules import http_error
from shared.webapi.engine.state import Op
from shared.webapi.engine.verdicts import ReadBack, readback_verdict
from shared.webapi.operations import CreateIdentity, Outcome
from shared.webapi.response import error_code
from shared.webapi.retry import parse_retry_after

if TYPE_CHECKING:
    from shared.webapi.engine.settle import Settler

__all__ = ["matches", "settle_readback"]

logger = logging.getLogger("shared.webapi.engine")


def matches(ident: CreateIdentity, found: Any) -> list[Mapping[str, Any]]:
    """The objects in a read-back answer (one object, or a collection's ``value``) whose
    identity attribute equals the expected value."""
    candidates = (
        found["value"]
        if isinstance(found, Mapping) and isinstance(found.get("value"), list)
        else [found]
    )
    return [c for c in candidates if isinstance(c, Mapping) and ident.matches(c)]


def settle_readback(s: Settler, o: Op, status: int, headers: Any, body: Any) -> None:
    """Settle ``o`` (in its read-back phase) from the read-back GET's non-429 answer."""
    if o.final is not None:
        return
    ident = o.prep.op.idempotency
    assert ident is not None
    assert o.conflict is not None
    c_status, c_body = o.conflict
    found = matches(ident, body) if 200 <= status < 300 else []
    verdict = readback_verdict(status, body, len(found))
    if verdict is ReadBack.RESOLVED:
        _resolved(s, o, ident, status, found[0])
        return
    if verdict is ReadBack.NO_MATCH and replication_retry(s, [o], c_status, c_body, force=True):
        return  # a new object may not be readable yet
    if verdict is ReadBack.NOT_FOUND and replication_retry(s, [o], status, body, force=True):
        return
    message = _failure(ident, o.conflict, status, body, len(found))
    if verdict is ReadBack.RETRY:
        s.retry(o, status=c_status, error=message, delay=parse_retry_after(headers))
        return
    code = error_code(c_body) or "ObjectConflict"
    s.finalize(o, Outcome.FAILED, status=c_status, body=c_body, error=message, code=code)


def _resolved(
    s: Settler, o: Op, ident: CreateIdentity, status: int, found: Mapping[str, Any]
) -> None:
    """Exactly one object carries the identity: the create is done."""
    s.stats.conflicts_resolved += 1
    record_created(s.created, found)
    logger.info(
        "operation %r: create conflict resolved, the object with %s == %r exists",
        o.id,
        ident.attribute,
        ident.value,
    )
    s.finalize(o, Outcome.SUCCEEDED, status=status, body=found, resolved_conflict=True)


def _failure(
    ident: CreateIdentity, conflict: tuple[int, Any], status: int, body: Any, matched: int
) -> str:
    """Why the conflict is not resolved (yet): what the read-back found, or how the GET
    was answered."""
    described = http_error(*conflict)
    if 200 <= status < 300:
        what = "no object" if not matched else f"{matched} objects"
        return (
            f"create conflicts with an existing object ({described}); read-back "
            f"{ident.path} found {what} with {ident.attribute} == {ident.value!r}"
        )
    return f"{described}; read-back GET {ident.path} answered {http_error(status, body)}"
