"""Retry rules, pure: what may be retried, how long to wait, when to stop.

- Statuses 429, 503 and 504 are retried; a 429 is safe for every method (the API refused
  before doing anything), 5xx and timeouts after sending are not safe for a non-idempotent
  request (POST): its outcome is unknown and it is *not* resent, unless the caller marks it
  idempotent.
- Transport errors: connect errors and pool timeouts (nothing was sent) are always retried;
  read/write timeouts, resets and protocol errors only for idempotent requests.
- The wait honours ``retry-after-ms`` / ``x-ms-retry-after-ms`` and ``Retry-After`` (integer
  or fractional seconds, or an HTTP-date); otherwise exponential backoff with full jitter.
- Bounded attempts *and* bounded total time. ``wait=False`` removes all waiting (for tests)
  but keeps the counting.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRYABLE_STATUSES",
    "Disposition",
    "RetryPolicy",
    "classify_exception",
    "classify_status",
    "is_idempotent",
    "parse_retry_after",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
"""PATCH counts as idempotent: Graph PATCH sets properties to given values."""

RETRYABLE_STATUSES = frozenset({429, 503, 504})
_UNKNOWN_OUTCOME_STATUSES = frozenset({500, 502, 503, 504})


class Disposition(enum.Enum):
    """What to do with one answer (or one transport error)."""

    DONE = "done"  # a final answer: success or a permanent error
    RETRY = "retry"  # safe to send again
    OUTCOME_UNKNOWN = "outcome_unknown"  # may have been applied; do not resend blindly


def is_idempotent(method: str, override: bool | None = None) -> bool:
    """Whether ``method`` may be resent when its outcome is unknown (``override`` wins)."""
    if override is not None:
        return override
    return method.upper() in IDEMPOTENT_METHODS


def classify_status(status: int, *, idempotent: bool) -> Disposition:
    """429 → RETRY always; 503/504 → RETRY when idempotent; any 5xx on a non-idempotent
    request → OUTCOME_UNKNOWN; everything else → DONE."""
    if status == 429:
        return Disposition.RETRY
    if idempotent:
        return Disposition.RETRY if status in RETRYABLE_STATUSES else Disposition.DONE
    if status in _UNKNOWN_OUTCOME_STATUSES:
        return Disposition.OUTCOME_UNKNOWN
    return Disposition.DONE


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.CloseError,
)


def classify_exception(exc: BaseException, *, idempotent: bool) -> Disposition:
    """Connect errors → RETRY; timeouts/resets after sending → RETRY if idempotent else
    OUTCOME_UNKNOWN; anything else (bad URL, local protocol error…) → DONE (raise)."""
    if isinstance(exc, _NOT_SENT):
        return Disposition.RETRY
    if isinstance(exc, _MAYBE_SENT):
        return Disposition.RETRY if idempotent else Disposition.OUTCOME_UNKNOWN
    return Disposition.DONE


def _seconds(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return max(0.0, value)


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be integer or fractional seconds, or an HTTP-date (relative to
    ``now``, default the current UTC time). Returns None when absent or unparseable.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if name in lowered:
            ms = _seconds(lowered[name])
            if ms is not None:
                return ms / 1000.0
    text = lowered.get("retry-after")
    if text is None:
        return None
    seconds = _seconds(text)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_attempts`` sends in all and at most ``max_total_seconds``.

    ``base``/``cap`` shape the exponential backoff with full jitter used when the API gave
    no Retry-After. ``wait=False`` removes every wait (tests) but keeps all counting,
    including the total-time bound (skipped waits still count as time spent).
    """

    max_attempts: int = 5
    max_total_seconds: float = 120.0
    base: float = 0.5
    cap: float = 30.0
    wait: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.max_total_seconds < 0 or self.base < 0 or self.cap < 0:
            raise ValueError("RetryPolicy times must not be negative")

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt, no retries (the batch engine does its own retrying)."""
        return cls(max_attempts=1, max_total_seconds=0.0, wait=False)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter backoff after the ``attempt``-th failed send (1-based)."""
        ceiling = min(self.cap, self.base * (2.0 ** max(0, attempt - 1)))
        return (rng or random).uniform(0.0, ceiling)

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """The API's Retry-After when given, else the backoff."""
        if retry_after is not None:
            return retry_after
        return self.backoff(attempt, rng)

    def allows(self, attempts_made: int, elapsed: float, delay: float) -> bool:
        """Whether another send fits: attempts left, and the wait ends within the time bound."""
        return attempts_made < self.max_attempts and elapsed + delay <= self.max_total_seconds
