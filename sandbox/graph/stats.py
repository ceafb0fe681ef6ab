"""Counters the tests (and the admin API) read: what the sandbox saw and what it did."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

OperationKey = tuple[str, str, str, str]  # tenant, METHOD, relative url, body hash


def body_hash(body: Any) -> str:
    """A stable hash of a JSON body (key order does not matter); "" for no body."""
    if body is None:
        return ""
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
    else:
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass
class ThrottleEvent:
    at: float
    tenant: str
    app_id: str
    method: str
    url: str
    retry_after: float  # seconds, exact (before header rounding)
    retry_after_header: str
    bucket: str
    in_batch: bool


@dataclass
class RetryEvent:
    """A request identical to one that was throttled (same tenant, method, url, body)."""

    tenant: str
    method: str
    url: str
    throttled_at: float
    retry_after: float  # what the header told the client (seconds)
    resent_at: float
    early: bool  # resent before Retry-After elapsed

    @property
    def waited(self) -> float:
        return self.resent_at - self.throttled_at


@dataclass
class GraphStats:
    requests: int = 0  # top-level HTTP requests that reached the API (incl. $batch POSTs)
    batch_requests: int = 0
    batch_items: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # items per $batch, in arrival order
    batch_shapes: Counter[str] = field(default_factory=Counter)  # "parallel" / "sequential"
    max_items_in_flight: int = 0  # most $batch items executing at once (concurrency proof)
    priorities: Counter[str] = field(default_factory=Counter)  # x-ms-throttle-priority sent
    http_versions: Counter[str] = field(default_factory=Counter)
    operations: int = 0  # top-level non-batch requests + batch items
    statuses: Counter[int] = field(default_factory=Counter)  # per operation
    top_level_statuses: Counter[int] = field(default_factory=Counter)  # per HTTP response
    throttled: int = 0  # operations answered 429
    throttled_by_bucket: Counter[str] = field(default_factory=Counter)
    resource_units: int = 0  # charged, including throttled operations
    writes_applied: int = 0
    user_creates: Counter[str] = field(default_factory=Counter)  # "tenant/upn" -> successes
    user_create_attempts: Counter[str] = field(default_factory=Counter)
    user_updates: Counter[str] = field(default_factory=Counter)  # "tenant/id" -> successes
    user_deletes: Counter[str] = field(default_factory=Counter)
    member_adds: Counter[str] = field(default_factory=Counter)  # "tenant/group/member"
    member_removes: Counter[str] = field(default_factory=Counter)
    revocations: Counter[str] = field(default_factory=Counter)  # "tenant/user id"
    auth_failures: int = 0
    forbidden: int = 0
    faults: Counter[str] = field(default_factory=Counter)  # injected faults by kind
    throttle_events: list[ThrottleEvent] = field(default_factory=list)
    retries: list[RetryEvent] = field(default_factory=list)
    pending_throttled: dict[OperationKey, tuple[float, float]] = field(default_factory=dict)

    def reset(self) -> None:
        fresh = GraphStats()
        self.__dict__.update(fresh.__dict__)

    # -- derived views ---------------------------------------------------------------------
    def duplicate_creates(self) -> list[str]:
        """UPNs ("tenant/upn") created more than once; should be empty."""
        return sorted(k for k, v in self.user_creates.items() if v > 1)

    @property
    def early_retries(self) -> list[RetryEvent]:
        return [r for r in self.retries if r.early]

    def note_operation(self, key: OperationKey, now: float) -> None:
        """Record a resend if this operation was throttled before."""
        pending = self.pending_throttled.pop(key, None)
        if pending is not None:
            throttled_at, retry_after = pending
            self.retries.append(
                RetryEvent(
                    key[0],
                    key[1],
                    key[2],
                    throttled_at,
                    retry_after,
                    now,
                    early=(now - throttled_at) < retry_after - 1e-9,
                )
            )

    def note_throttled(
        self, key: OperationKey, event: ThrottleEvent, header_seconds: float
    ) -> None:
        self.throttled += 1
        self.throttled_by_bucket[event.bucket] += 1
        self.throttle_events.append(event)
        self.pending_throttled[key] = (event.at, header_seconds)

    def forget_throttles(self, events: list[ThrottleEvent]) -> None:
        """Throttles whose response never reached the client (connection dropped)."""
        times = {e.at for e in events}
        for key, (at, _) in list(self.pending_throttled.items()):
            if at in times:
                del self.pending_throttled[key]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "batchRequests": self.batch_requests,
            "batchItems": self.batch_items,
            "batchShapes": dict(self.batch_shapes),
            "maxItemsInFlight": self.max_items_in_flight,
            "operations": self.operations,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "topLevelStatuses": {str(k): v for k, v in sorted(self.top_level_statuses.items())},
            "throttled": self.throttled,
            "throttledByBucket": dict(self.throttled_by_bucket),
            "resourceUnits": self.resource_units,
            "writesApplied": self.writes_applied,
            "userCreates": sum(self.user_creates.values()),
            "userCreateAttempts": sum(self.user_create_attempts.values()),
            "duplicateCreates": self.duplicate_creates(),
            "revocations": dict(self.revocations),
            "authFailures": self.auth_failures,
            "forbidden": self.forbidden,
            "faults": dict(self.faults),
            "retries": len(self.retries),
            "earlyRetries": len(self.early_retries),
            "throttleEvents": [
                {
                    "at": e.at,
                    "tenant": e.tenant,
                    "method": e.method,
                    "url": e.url,
                    "retryAfter": e.retry_after_header,
                    "bucket": e.bucket,
                    "inBatch": e.in_batch,
                }
                for e in self.throttle_events[-200:]
            ],
        }
