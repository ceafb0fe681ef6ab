"""Calling the web API: the HTTP client (retries, 401 refresh, paging, delta) and the batch
engine (fully parallel batches of ≤ 20, dependencies honoured by the engine, member adds
coalesced, pacing, item retries, exactly one result per operation).

Where things live: client.py (ApiClient and its request pipeline), exchange.py (one request's
state across sends), outcome.py (what a final answer or transport error means), retry.py
(what may be retried and how long to wait), connection.py (TLS, HTTP/2, limits, timeouts),
paging.py (next links, delta rounds), response.py (ApiResponse), urls.py (the origin rule and
object URLs), operations.py (what goes into the engine and its validation, with jsonbody.py
and dependencies.py), engine/ (the batch engine), pacing.py and fleet.py (the tenant's
budget).

The names below are imported on first use (PEP 562), so that the cold path of an invocation
pays for the client alone, not for the engine behind it.
"""

from __future__ import annotations

from shared.lazy import lazy_attributes

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing on the cold path
if TYPE_CHECKING:
    from shared.webapi.client import ApiClient, DeltaPages
    from shared.webapi.engine import (
        DEFAULT_REPLICATION_SECONDS,
        BatchEngine,
        EngineReport,
        EngineStats,
        Progress,
        ProgressCallback,
    )
    from shared.webapi.operations import Cost, CreateIdentity, Operation, Outcome, Result
    from shared.webapi.pacing import PacingConfig, TenantPacer
    from shared.webapi.response import ApiResponse, DeltaResult
    from shared.webapi.retry import RetryPolicy, parse_retry_after
    from shared.webapi.timing import Clock, Sleep
    from shared.webapi.tokens import TokenSource
    from shared.webapi.urls import directory_object_url, group_url, user_url

_WHERE = {
    "ApiClient": "client",
    "DeltaPages": "client",
    "DEFAULT_REPLICATION_SECONDS": "engine",
    "BatchEngine": "engine",
    "EngineReport": "engine",
    "EngineStats": "engine",
    "Progress": "engine",
    "ProgressCallback": "engine",
    "Cost": "operations",
    "CreateIdentity": "operations",
    "Operation": "operations",
    "Outcome": "operations",
    "Result": "operations",
    "PacingConfig": "pacing",
    "TenantPacer": "pacing",
    "ApiResponse": "response",
    "DeltaResult": "response",
    "RetryPolicy": "retry",
    "parse_retry_after": "retry",
    "Clock": "timing",
    "Sleep": "timing",
    "TokenSource": "tokens",
    "directory_object_url": "urls",
    "group_url": "urls",
    "user_url": "urls",
}

__all__ = [
    "DEFAULT_REPLICATION_SECONDS",
    "ApiClient",
    "ApiResponse",
    "BatchEngine",
    "Clock",
    "Cost",
    "CreateIdentity",
    "DeltaPages",
    "DeltaResult",
    "EngineReport",
    "EngineStats",
    "Operation",
    "Outcome",
    "PacingConfig",
    "Progress",
    "ProgressCallback",
    "Result",
    "RetryPolicy",
    "Sleep",
    "TenantPacer",
    "TokenSource",
    "directory_object_url",
    "group_url",
    "parse_retry_after",
    "user_url",
]

__getattr__ = lazy_attributes(__name__, _WHERE)
