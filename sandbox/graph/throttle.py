"""Identity-service throttling: refilling token buckets that keep counting while throttled.

Each bucket holds up to ``limit`` units and refills continuously at ``limit / window`` per
second. A request is admitted when every bucket it draws on can pay its cost. A request that
is refused is charged anyway (the level may go negative, down to ``-max_debt * limit``), so
a client that retries before ``Retry-After`` elapses pushes its own recovery further out.
``Retry-After`` is the time until the bucket that refused the request could pay for it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import GraphConfig


@dataclass
class TokenBucket:
    limit: float
    window: float
    level: float
    updated: float

    @property
    def rate(self) -> float:
        return self.limit / self.window

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.limit, self.level + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def used_fraction(self) -> float:
        return (self.limit - self.level) / self.limit

    def wait_for(self, cost: float) -> float:
        """Seconds until the level reaches ``cost``."""
        return max(0.0, (cost - self.level) / self.rate)


@dataclass
class Charge:
    """One bucket a request draws on."""

    name: str  # stats/diagnostic name, e.g. "app_tenant_ru"
    scope: str  # x-ms-throttle-scope value
    information: str  # x-ms-throttle-information value
    key: tuple[str, ...]
    limit: float
    window: float
    cost: float


@dataclass
class Decision:
    admitted: bool
    retry_after: float = 0.0
    scope: str = ""
    information: str = ""
    bucket: str = ""
    used_fraction: float = 0.0  # highest use of any bucket charged, after charging


@dataclass
class Throttler:
    config: GraphConfig
    clock: Callable[[], float]
    buckets: dict[tuple[str, ...], TokenBucket] = field(default_factory=dict)

    def reset(self) -> None:
        self.buckets.clear()

    def charges(
        self, app_id: str, tenant_id: str, ru: int, writes: int, user_count: int
    ) -> list[Charge]:
        c = self.config
        out = [
            Charge(
                "app_tenant_ru",
                f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}",
                "ResourceUnitLimitExceeded",
                ("app_tenant_ru", app_id, tenant_id),
                c.ru_limit_for(user_count),
                c.ru_window,
                ru,
            ),
            Charge(
                "app_ru",
                f"Application/ReadWrite/{app_id}/{tenant_id}",
                "ResourceUnitLimitExceeded",
                ("app_ru", app_id),
                c.app_ru_limit,
                c.app_ru_window,
                ru,
            ),
        ]
        if writes:
            out += [
                Charge(
                    "app_tenant_write",
                    f"Tenant_Application/Write/{app_id}/{tenant_id}",
                    "WriteLimitExceeded",
                    ("app_tenant_write", app_id, tenant_id),
                    c.app_tenant_write_limit,
                    c.app_tenant_write_window,
                    writes,
                ),
                Charge(
                    "tenant_write",
                    f"Tenant/Write/{app_id}/{tenant_id}",
                    "WriteLimitExceeded",
                    ("tenant_write", tenant_id),
                    c.tenant_write_limit,
                    c.tenant_write_window,
                    writes,
                ),
                Charge(
                    "app_write",
                    f"Application/Write/{app_id}/{tenant_id}",
                    "WriteLimitExceeded",
                    ("app_write", app_id),
                    c.app_write_limit,
                    c.app_write_window,
                    writes,
                ),
            ]
        return out

    def bucket(self, charge: Charge, now: float) -> TokenBucket:
        bucket = self.buckets.get(charge.key)
        if bucket is None:
            bucket = self.buckets[charge.key] = TokenBucket(
                charge.limit, charge.window, charge.limit, now
            )
        else:
            bucket.refill(now)
            if bucket.limit != charge.limit or bucket.window != charge.window:
                # tenant grew into another size class, or the config changed
                bucket.limit, bucket.window = charge.limit, charge.window
                bucket.level = min(bucket.level, bucket.limit)
        return bucket

    def admit(self, charges: list[Charge]) -> Decision:
        now = self.clock()
        pairs = [(charge, self.bucket(charge, now)) for charge in charges]
        refused = [(c, b) for c, b in pairs if b.level < c.cost]
        for charge, bucket in pairs:  # charged either way: throttled requests keep counting
            bucket.level = max(
                -self.config.max_debt_buckets * bucket.limit, bucket.level - charge.cost
            )
        used = max((b.used_fraction() for _, b in pairs), default=0.0)
        if not refused:
            return Decision(True, used_fraction=used)
        waits = [(b.wait_for(c.cost), c) for c, b in refused]
        wait, charge = max(waits, key=lambda pair: pair[0])
        return Decision(
            False,
            retry_after=wait,
            scope=charge.scope,
            information=charge.information,
            bucket=charge.name,
            used_fraction=used,
        )

    def format_retry_after(self, seconds: float) -> str:
        if self.config.fractional_retry_after:
            return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".")
        return str(max(1, math.ceil(seconds - 1e-9)))

    def snapshot(self) -> dict[str, dict[str, float]]:
        now = self.clock()
        out = {}
        for key, bucket in self.buckets.items():
            bucket.refill(now)
            out["/".join(key)] = {
                "limit": bucket.limit,
                "window": bucket.window,
                "level": round(bucket.level, 3),
            }
        return out
