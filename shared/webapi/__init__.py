"""Calling the web API: the HTTP client (retries, 401 refresh, paging, delta) and the batch
engine (pack ≤ 20, dependsOn, pacing, item retries, exactly one result per operation)."""

from __future__ import annotations

from shared.webapi.client import ApiClient
from shared.webapi.engine import BatchEngine, EngineReport, EngineStats, Progress, ProgressCallback
from shared.webapi.operations import Cost, CreateIdentity, Operation, Outcome, Result
from shared.webapi.pacing import PacingConfig, TenantPacer
from shared.webapi.response import ApiResponse, DeltaResult
from shared.webapi.retry import RetryPolicy, parse_retry_after
from shared.webapi.timing import Clock, Sleep
from shared.webapi.tokens import TokenSource

__all__ = [
    "ApiClient",
    "ApiResponse",
    "BatchEngine",
    "Clock",
    "Cost",
    "CreateIdentity",
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
    "parse_retry_after",
]
