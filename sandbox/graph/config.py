"""Configuration of the sandbox directory API: budgets, costs, lifetimes and faults.

Defaults are Microsoft Graph's published identity-service limits (learn.microsoft.com/graph/
throttling-limits, "Identity and access service limits"). Every budget and window is a plain
field so tests can shrink them (or use :meth:`GraphConfig.scaled`) and run in seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GraphConfig:
    """Budgets, costs and behaviour switches; mutable, read on every request."""

    # -- resource units per (application, tenant) ------------------------------------------
    # S (< size_thresholds[0] users), M (up to size_thresholds[1]), L (above): 3,500 / 5,000 /
    # 8,000 per 10 s. Set all three equal to ignore tenant size.
    ru_limits: tuple[int, int, int] = (3500, 5000, 8000)
    size_thresholds: tuple[int, int] = (50, 500)
    ru_window: float = 10.0
    # -- writes per (application, tenant): 3,000 per 150 s (= 20 writes/s) ---------------------
    app_tenant_write_limit: int = 3000
    app_tenant_write_window: float = 150.0
    # -- writes per tenant, all applications: 18,000 per 5 minutes ---------------------------
    tenant_write_limit: int = 18000
    tenant_write_window: float = 300.0
    # -- per application across all tenants: 150,000 RU / 20 s, 70,000 writes / 5 min --------
    app_ru_limit: int = 150000
    app_ru_window: float = 20.0
    app_write_limit: int = 70000
    app_write_window: float = 300.0
    # A throttled request is still charged ("keeps counting"); the debt a bucket can carry is
    # bounded to this many full buckets so that a client hammering it is not locked out forever.
    max_debt_buckets: float = 1.0
    # -- costs (resource units) -----------------------------------------------------------------
    cost_get_users: int = 2
    cost_get_members: int = 3
    cost_get_other: int = 1
    cost_write: int = 1
    write_cost: int = 1  # write-quota units per POST/PATCH/PUT/DELETE
    select_discount: int = 1
    expand_surcharge: int = 1
    small_top_discount: int = 1  # $top < 20 lowers the cost by one (documented)
    # -- response headers -----------------------------------------------------------------------
    fractional_retry_after: bool = False  # False: integer seconds, rounded up, at least 1
    limit_percentage_threshold: float = 0.8
    # -- paging and delta -----------------------------------------------------------------------
    default_page_size: int = 100
    max_page_size: int = 999
    delta_page_size: int = 100
    delta_token_lifetime: float = 7 * 24 * 3600.0  # 7 days for directory objects
    delta_expired_status: int = 400
    delta_expired_code: str = "syncStateNotFound"
    skiptoken_lifetime: float = 3600.0
    # -- $batch ---------------------------------------------------------------------------------
    max_batch_requests: int = 20
    shuffle_batch_responses: bool = True
    # Items of a fully parallel batch run concurrently in an order drawn from an RNG seeded
    # with this (Graph: "no guaranteed order"); reset() re-seeds it.
    batch_seed: int = 0
    # -- strictness switches -----------------------------------------------------------------
    # Reading employeeLeaveDateTime needs User-LifeCycleInfo.Read.All (or ReadWrite.All),
    # writing it User-LifeCycleInfo.ReadWrite.All; without it: 403 (on by default, as Graph;
    # learn.microsoft.com/graph/api/resources/user, employeeLeaveDateTime).
    require_lifecycle_role: bool = True
    # Reject ne / not / endswith / eq null unless ConsistencyLevel: eventual and $count=true.
    require_advanced_query_headers: bool = True
    max_members_bind: int = 20
    # -- eventual consistency ------------------------------------------------------------------
    # Seconds (service clock) during which a user or group created through the API is not
    # yet replicated: GET by id answers 404, lists and $filter do not return it, and a
    # members/$ref or members@odata.bind naming it (as member or as group) answers 400
    # "The source resource object or one of the objects being referenced do not exist."
    # The create response itself returns the object. Objects seeded directly are replicated
    # at once. 0 turns it off (unit tests); the default keeps it on, short, everywhere else.
    replication_delay: float = 1.0
    # -- POST /users ---------------------------------------------------------------------------
    # Verified domains of a tenant that has none registered (Directory.add_verified_domains).
    verified_domains: tuple[str, ...] = ("contoso.example",)

    def ru_limit_for(self, user_count: int) -> int:
        small, medium = self.size_thresholds
        if user_count < small:
            return self.ru_limits[0]
        if user_count <= medium:
            return self.ru_limits[1]
        return self.ru_limits[2]

    def scaled(self, budget: float = 1.0, time: float = 1.0) -> GraphConfig:
        """A copy with every limit multiplied by ``budget`` and every window by ``time``.

        ``GraphConfig().scaled(budget=0.01, time=0.1)`` keeps Graph's shape (the refill rate
        is budget/time times Graph's) with 80 RU per second for a large tenant.
        """

        def lim(value: int) -> int:
            return max(1, round(value * budget))

        return dataclasses.replace(
            self,
            ru_limits=(lim(self.ru_limits[0]), lim(self.ru_limits[1]), lim(self.ru_limits[2])),
            ru_window=self.ru_window * time,
            app_tenant_write_limit=lim(self.app_tenant_write_limit),
            app_tenant_write_window=self.app_tenant_write_window * time,
            tenant_write_limit=lim(self.tenant_write_limit),
            tenant_write_window=self.tenant_write_window * time,
            app_ru_limit=lim(self.app_ru_limit),
            app_ru_window=self.app_ru_window * time,
            app_write_limit=lim(self.app_write_limit),
            app_write_window=self.app_write_window * time,
        )

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a JSON mapping (admin API); unknown names raise ValueError."""
        update_dataclass(self, values)


@dataclass
class FaultConfig:
    """Faults injected on request. Probabilities are drawn from the service's seeded RNG."""

    seed: int = 0
    # Latency: every top-level request sleeps base + uniform(0, jitter); every $batch item
    # additionally sleeps per_item (so a batch of 20 writes at 0.05 s takes about a second).
    latency_base: float = 0.0
    latency_jitter: float = 0.0
    latency_per_item: float = 0.0
    # Server errors on operations (top-level non-batch requests and each $batch item). An
    # operation answered with a 5xx was NOT applied.
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (503, 504)
    error_retry_after_rate: float = 0.5  # share of injected 5xx that carry Retry-After
    error_retry_after: float = 1.0
    fail_next: int = 0  # the next N operations answer 503 (deterministic)
    envelope_error_rate: float = 0.0  # 5xx for a whole $batch POST (nothing applied)
    # Connection resets (top-level HTTP requests, including $batch). "before": nothing was
    # applied. "after_apply": the operation WAS applied, then the connection dropped.
    reset_rate: float = 0.0
    reset_after_apply_rate: float = 0.0
    reset_next: int = 0
    reset_next_after_apply: int = 0
    # Slow responses: the request is applied, then the response is held for slow_seconds.
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    slow_next: int = 0
    # Outage: every request between outage_start and outage_end (service clock) answers 503.
    outage_start: float | None = None
    outage_end: float | None = None
    outage_retry_after: float | None = None
    # Token revocation: at the first request at or after this instant (service clock), the
    # issuer revokes every token issued so far.
    revoke_tokens_at: float | None = None
    # Paging: share of non-final list/delta pages returned empty (with a nextLink).
    empty_page_rate: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def update(self, values: dict[str, Any]) -> None:
        update_dataclass(self, values)


def update_dataclass(obj: Any, values: dict[str, Any]) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    for name, value in values.items():
        current = getattr(obj, name)
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        setattr(obj, name, value)
