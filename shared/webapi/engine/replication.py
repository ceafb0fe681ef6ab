"""Objects created earlier in the same run, and the replication-delay retry.

Where it sits: when a POST succeeds, the settler (``settle.py``) records what it created
(:func:`record_created`) and points the member references of its dependants at the new
object's id (:func:`reference_created`). Later, a "does not exist" answer about such an
object is most likely replication delay, not a fault: Graph's Add members page
(https://learn.microsoft.com/graph/api/group-post-members) says to "retry after a brief
delay", and "Designing for Eventual Consistency for Microsoft Entra"
(https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra)
explains that a new object can answer "Not Found" until it has replicated. So
:func:`replication_retry` resends it with backoff, within the engine's
``replication_seconds`` (and the run's time bound); the settler, the bind and the read-back
call it and fall back to their own rule when it declines.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.errors import UnsafeRequestError
from shared.webapi.engine.rules import http_error
from shared.webapi.engine.state import Op, Phase
from shared.webapi.retry import RetryPolicy
from shared.webapi.urls import directory_object_url

if TYPE_CHECKING:
    from shared.webapi.engine.settle import Settler

__all__ = [
    "MAX_REPLICATION_TRIES",
    "eligible",
    "record_created",
    "reference_created",
    "replication_retry",
    "touched_keys",
]

MAX_REPLICATION_TRIES = 32  # per operation; the replication bound usually ends it first


def touched_keys(op: Op) -> Iterable[str]:
    """Ids and names an operation touches: its URL's segments and its member reference."""
    for segment in urlsplit(op.prep.url).path.split("/"):
        if segment:
            yield segment.lower()
    if op.member is not None:
        yield op.member[1].rstrip("/").rsplit("/", 1)[-1].lower()


def record_created(created: set[str], body: Any) -> None:
    """Remember the id and userPrincipalName of an object a POST created (or a read-back
    found), lower-cased, in ``created``."""
    if isinstance(body, dict):
        for key in ("id", "userPrincipalName"):
            value = body.get(key)
            if isinstance(value, str) and value:
                created.add(value.lower())


def eligible(created: set[str], o: Op) -> bool:
    """Whether ``o`` touches an object created earlier in this run."""
    return o.after_post or any(k in created for k in touched_keys(o))


def reference_created(dep: Op, create: Op) -> None:
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


def _backoff(policy: RetryPolicy, tries: int, rng: random.Random) -> float:
    """The wait before replication try ``tries``: doubling from the policy's base (at
    least 10 ms) up to its cap, with jitter (half to full)."""
    delay = min(policy.cap, max(policy.base, 0.01) * 2.0 ** (tries - 1))
    return delay * rng.uniform(0.5, 1.0)


def replication_retry(
    s: Settler, ops: list[Op], status: int, body: Any, *, force: bool = False
) -> bool:
    """Retry ``ops`` (one request) after a "does not exist" answer while the replication
    bound allows; False when it does not (the caller then fails them or falls back).
    ``force``: retry even when ``ops`` touch nothing created in this run (a read-back)."""
    if not force and not all(eligible(s.created, o) for o in ops):
        return False
    now = s.clock()
    for o in ops:
        if o.replication_since is None:
            o.replication_since = now
    since = min(o.replication_since or now for o in ops)
    tries = max(o.replication_tries for o in ops) + 1
    delay = _backoff(s.policy, tries, s.rng)
    if (
        tries > MAX_REPLICATION_TRIES
        or now + delay - since > s.replication_seconds
        or now + delay - s.start > s.policy.max_total_seconds
    ):
        return False
    error = f"{http_error(status, body)} (retrying: replication delay)"
    for o in ops:
        o.replication_tries = tries
        if o.phase is Phase.SEND:
            o.free_sends += 1
        o.last_status, o.last_error, o.last_body = status, error, body
        s.stats.replication_retries += 1
        s.schedule(o, delay)
    return True
