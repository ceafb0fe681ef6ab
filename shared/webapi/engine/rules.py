"""Graph's answers, classified: pure functions over (status, headers, body).

- a create conflict: 400/409 with ``ObjectConflict`` (in ``code`` or ``details``) or
  "already exist(s)" — https://learn.microsoft.com/graph/api/user-post-users;
- a member reference that is already there: 400 "One or more added object references
  already exist" — done, not a failure (https://learn.microsoft.com/graph/api/group-post-members);
- a reference or object that does not exist (yet): 400 "… do not exist" /
  ``Request_ResourceNotFound``, or 404. Right after a create this is replication delay
  ("retry after a brief delay", the Add members page;
  https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra);
- transient: 500/502/503/504; throttled: 429 with Retry-After
  (https://learn.microsoft.com/graph/throttling).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from shared.webapi.response import error_code, error_message
from shared.webapi.retry import RetryPolicy, parse_retry_after

__all__ = [
    "TRANSIENT_5XX",
    "does_not_exist",
    "http_error",
    "is_conflict",
    "limit_percentage",
    "references_exist",
    "reports_usage",
    "throttle_wait",
]

TRANSIENT_5XX = frozenset({500, 502, 503, 504})


def http_error(status: int, body: Any) -> str:
    """An API error as the engine reports it: ``HTTP 400 Code: message``."""
    code = error_code(body)
    return f"HTTP {status}" + (f" {code}" if code else "") + f": {error_message(body)}"


def is_conflict(status: int, body: Any) -> bool:
    """A create refused because an object with the same unique value exists."""
    if status not in (400, 409):
        return False
    code = (error_code(body) or "").lower()
    if code == "objectconflict":
        return True
    err = body.get("error") if isinstance(body, Mapping) else None
    details = err.get("details") if isinstance(err, Mapping) else None
    if isinstance(details, list) and any(
        isinstance(d, Mapping) and str(d.get("code", "")).lower() == "objectconflict"
        for d in details
    ):
        return True
    return "already exist" in error_message(body).lower() and not references_exist(status, body)


def references_exist(status: int, body: Any) -> bool:
    """A member add whose reference is already there: the add is done."""
    return status == 400 and "added object references already exist" in (
        error_message(body).lower()
    )


def does_not_exist(status: int, body: Any) -> bool:
    """The target or a referenced object was not found (maybe not replicated yet)."""
    if status == 404:
        return True
    if status != 400:
        return False
    code = (error_code(body) or "").lower()
    message = error_message(body).lower()
    return (
        code == "request_resourcenotfound"
        or "do not exist" in message
        or ("does not exist" in message)
    )


def reports_usage(headers: Mapping[str, str]) -> bool:
    """Graph reports each request's cost; its silence about limits then means headroom."""
    return "x-ms-resource-unit" in headers


def limit_percentage(headers: Mapping[str, str]) -> float | None:
    """``x-ms-throttle-limit-percentage`` in percent. Graph sends a fraction of the limit
    (0.8 = 80 %, up to 1.8 while throttled), only above 80 % use."""
    text = headers.get("x-ms-throttle-limit-percentage")
    if text is None:
        return None
    try:
        return float(text) * 100.0
    except ValueError:
        return None


def throttle_wait(
    headers: Mapping[str, str], attempt: int, policy: RetryPolicy, rng: random.Random
) -> float:
    """How long a 429 (whole batch, batch item or single request) keeps us away: the
    API's Retry-After when given, never less; else the policy's backoff."""
    retry_after = parse_retry_after(headers)
    return retry_after if retry_after is not None else policy.backoff(max(1, attempt), rng)
