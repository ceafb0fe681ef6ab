"""BaseUrl: relative targets take a fast path that refuses exactly what the full parse does."""

from __future__ import annotations

import httpx
import pytest

from shared.errors import UnsafeRequestError
from shared.webapi.urls import BaseUrl

BASE = BaseUrl("https://graph.microsoft.com/v1.0")


@pytest.mark.parametrize(
    ("target", "relative"),
    [
        ("/users/1", "/users/1"),
        ("users/1", "/users/1"),
        ("/users?$filter=employeeId eq 'a b'", "/users?$filter=employeeId eq 'a b'"),
        ("https://graph.microsoft.com/v1.0/users/1?$select=id", "/users/1?$select=id"),
    ],
)
def test_relative_and_resolve_agree(target: str, relative: str) -> None:
    assert BASE.relative(target) == relative
    assert BASE.resolve(target) == httpx.URL(BASE.text + relative)


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("", "missing"),
        ("   ", "missing"),
        (None, "missing"),
        ("//evil.example/users", "scheme-relative"),
        ("\\\\evil.example/users", "scheme-relative"),
        ("/users/1\r\nX-Injected: 1", "control characters"),
        ("/users/\x7f", "control characters"),
        ("/users/" + "a" * 70_000, "longer than"),
        ("https://evil.example/v1.0/users", "refused to send the token"),
        ("https://graph.microsoft.com/beta/users", "outside the base URL"),
    ],
)
def test_unsafe_targets_are_refused_by_both(target: object, problem: str) -> None:
    with pytest.raises(UnsafeRequestError, match=problem):
        BASE.relative(target)  # type: ignore[arg-type]
    if problem != "outside the base URL":  # resolve() allows the whole origin
        with pytest.raises(UnsafeRequestError, match=problem):
            BASE.resolve(target)  # type: ignore[arg-type]
