"""Fault injection: latency, 5xx, connection resets, slow responses, outages, revocation.

Dropping a connection from inside an ASGI app
---------------------------------------------
ASGI gives an application no handle on the socket, and both ways of "not answering" that the
spec allows end in a 500 from uvicorn (an exception before ``http.response.start``, or
returning without a response). Two mechanisms, tried in order:

1. **Abort the transport (real TCP reset).** uvicorn's ``receive`` callable is a bound method
   of its per-request ``RequestResponseCycle`` (h11 and httptools alike), which holds the
   asyncio ``transport``. Starlette passes ``receive`` through routing unchanged (only
   ``BaseHTTPMiddleware`` would wrap it). We set ``SO_LINGER`` to zero on the socket and
   call ``transport.abort()``: the kernel sends RST, the client sees "connection reset" with
   no status line, and uvicorn notices the disconnect (``connection_lost``) so it does not
   try to send its 500. Works over TLS too (the SSL transport's ``abort`` closes the socket).
2. **Fallback: start the response, then raise :class:`ConnectionDropped`.** uvicorn closes the
   transport when an app fails after ``http.response.start``, so the client gets headers and a
   truncated body (httpx: ``RemoteProtocolError``; requests: ``ChunkedEncodingError``). Under
   ``httpx.ASGITransport`` (unit tests) the exception reaches the client call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from typing import Any

from starlette.types import Receive, Scope, Send

from .config import FaultConfig

log = logging.getLogger(__name__)


class ConnectionDropped(Exception):
    """Raised to make the server drop the connection without a complete response."""


class Faults:
    """The live fault settings plus the deterministic RNG that draws them."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self.rng = random.Random(self.config.seed)

    def reset(self) -> None:
        """Back to no faults (in place: references to ``.config`` stay valid)."""
        self.config.__dict__.update(FaultConfig().__dict__)
        self.rng = random.Random(self.config.seed)

    def set(self, **values: Any) -> None:
        """``faults.set(error_rate=0.1, latency_per_item=0.05)``."""
        self.update(values)

    def update(self, values: dict[str, Any]) -> None:
        self.config.update(values)
        if "seed" in values:
            self.rng = random.Random(self.config.seed)

    # -- draws -------------------------------------------------------------------------------
    def chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def take_counter(self, name: str) -> bool:
        value = int(getattr(self.config, name))
        if value > 0:
            setattr(self.config, name, value - 1)
            return True
        return False

    def request_latency(self) -> float:
        c = self.config
        jitter = self.rng.uniform(0, c.latency_jitter) if c.latency_jitter > 0 else 0.0
        return max(0.0, c.latency_base + jitter)

    def server_error(self) -> tuple[int, float | None] | None:
        """A 5xx to inject for one operation, with its Retry-After (or None), else None."""
        c = self.config
        if self.take_counter("fail_next"):
            return 503, c.error_retry_after
        if not self.chance(c.error_rate):
            return None
        status = self.rng.choice(list(c.error_statuses) or [503])
        retry = c.error_retry_after if self.chance(c.error_retry_after_rate) else None
        return status, retry

    def reset_before(self) -> bool:
        return self.take_counter("reset_next") or self.chance(self.config.reset_rate)

    def reset_after(self) -> bool:
        return self.take_counter("reset_next_after_apply") or self.chance(
            self.config.reset_after_apply_rate
        )

    def slow(self) -> float:
        c = self.config
        if self.take_counter("slow_next") or self.chance(c.slow_rate):
            return c.slow_seconds
        return 0.0

    def in_outage(self, now: float) -> bool:
        c = self.config
        return (
            c.outage_start is not None
            and c.outage_end is not None
            and c.outage_start <= now < c.outage_end
        )

    def outage_for(self, now: float, seconds: float, start_in: float = 0.0) -> None:
        self.config.outage_start = now + start_in
        self.config.outage_end = now + start_in + seconds


async def drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """Close the client's connection without an HTTP response (see module docstring)."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        for _ in range(3):  # let connection_lost run so uvicorn marks the cycle disconnected
            await asyncio.sleep(0)
        if cycle is not None and hasattr(cycle, "disconnected"):
            cycle.disconnected = True
        log.info(
            "graph sandbox: connection reset injected (%s %s)",
            scope.get("method"),
            scope.get("path"),
        )
        return
    log.info(
        "graph sandbox: connection drop injected by aborting the response (%s %s)",
        scope.get("method"),
        scope.get("path"),
    )
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise ConnectionDropped("sandbox fault: connection dropped")


class DropConnectionResponse:
    """An ASGI response that drops the connection instead of answering."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await drop_connection(scope, receive, send)
