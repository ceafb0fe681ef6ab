"""What the web API client needs from the auth layer: something that hands out bearer tokens."""

from __future__ import annotations

from typing import Protocol

__all__ = ["TokenSource"]


class TokenSource(Protocol):
    """Returns a bearer token for the API (tenant and scope are bound by the caller).

    ``force_refresh=True`` asks for a new token even when a cached one looks valid; the client
    does that once after a 401.
    """

    async def __call__(self, *, force_refresh: bool = False) -> str: ...
