from __future__ import annotations

import random
from datetime import datetime, timezone

import httpx
import pytest

from shared.webapi.retry import (
    Disposition,
    RetryPolicy,
    classify_exception,
    classify_status,
    is_idempotent,
    parse_retry_after,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after": " 0.25 "}, 0.25),
        ({"Retry-After": "Wed, 01 Jan 2025 12:00:07 GMT"}, 7.0),
        ({"Retry-After": "Wed, 01 Jan 2025 11:59:00 GMT"}, 0.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"x-ms-retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_accepts_httpx_headers() -> None:
    assert parse_retry_after(httpx.Headers({"RETRY-AFTER": "2.5"})) == 2.5


@pytest.mark.parametrize(
    ("method", "override", "expected"),
    [
        ("GET", None, True),
        ("patch", None, True),
        ("PUT", None, True),
        ("DELETE", None, True),
        ("HEAD", None, True),
        ("OPTIONS", None, True),
        ("POST", None, False),
        ("POST", True, True),
        ("GET", False, False),
    ],
)
def test_is_idempotent(method: str, override: bool | None, expected: bool) -> None:
    assert is_idempotent(method, override) is expected


@pytest.mark.parametrize(
    ("status", "idempotent", "expected"),
    [
        (429, False, Disposition.RETRY),
        (429, True, Disposition.RETRY),
        (503, True, Disposition.RETRY),
        (504, True, Disposition.RETRY),
        (500, True, Disposition.DONE),
        (503, False, Disposition.OUTCOME_UNKNOWN),
        (504, False, Disposition.OUTCOME_UNKNOWN),
        (500, False, Disposition.OUTCOME_UNKNOWN),
        (400, False, Disposition.DONE),
        (200, True, Disposition.DONE),
    ],
)
def test_classify_status(status: int, idempotent: bool, expected: Disposition) -> None:
    assert classify_status(status, idempotent=idempotent) is expected


REQ = httpx.Request("GET", "https://graph.microsoft.com/v1.0/users")


@pytest.mark.parametrize(
    ("exc", "idempotent", "expected"),
    [
        (httpx.ConnectError("refused", request=REQ), False, Disposition.RETRY),
        (httpx.ConnectTimeout("slow", request=REQ), False, Disposition.RETRY),
        (httpx.PoolTimeout("pool", request=REQ), False, Disposition.RETRY),
        (httpx.ReadTimeout("slow", request=REQ), True, Disposition.RETRY),
        (httpx.ReadTimeout("slow", request=REQ), False, Disposition.OUTCOME_UNKNOWN),
        (httpx.RemoteProtocolError("reset", request=REQ), True, Disposition.RETRY),
        (httpx.RemoteProtocolError("reset", request=REQ), False, Disposition.OUTCOME_UNKNOWN),
        (httpx.ReadError("reset", request=REQ), False, Disposition.OUTCOME_UNKNOWN),
        (httpx.UnsupportedProtocol("ftp", request=REQ), True, Disposition.DONE),
    ],
)
def test_classify_exception(exc: Exception, idempotent: bool, expected: Disposition) -> None:
    assert classify_exception(exc, idempotent=idempotent) is expected


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    rng = random.Random(3)
    for attempt in range(1, 10):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        values = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0.0 <= v <= ceiling for v in values)
        assert max(values) > ceiling * 0.8  # spreads over the whole range


def test_delay_prefers_retry_after() -> None:
    assert RetryPolicy().delay(3, 1.5) == 1.5


def test_allows_bounds_attempts_and_total_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_total_seconds=10.0)
    assert policy.allows(1, 0.0, 1.0)
    assert policy.allows(2, 8.0, 2.0)
    assert not policy.allows(3, 0.0, 0.0)  # attempts used up
    assert not policy.allows(1, 8.0, 2.5)  # would end past the time bound


def test_never_allows_no_retry() -> None:
    assert not RetryPolicy.never().allows(1, 0.0, 0.0)


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"max_total_seconds": -1.0}, {"base": -0.1}]
)
def test_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
