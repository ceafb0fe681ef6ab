"""One logical request as it moves through the client's pipeline.

:class:`ApiClient.request <shared.webapi.client.ApiClient.request>` builds one
:class:`Exchange` and hands it down the chain (retries → auth → redirects → one send). It
holds what is sent and the bookkeeping that outlives a single send: the attempts made, the
waits skipped with ``RetryPolicy(wait=False)``, whether the one forced token refresh was
spent, and the ``client-request-id`` of the current send (every send gets a fresh one, so a
failure in the logs names exactly one HTTP exchange).

The token is not kept here: it is fetched per send and lives only in that send's headers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from shared.webapi.retry import RetryPolicy

__all__ = ["LOGGER_NAME", "Exchange", "new_request_id"]

LOGGER_NAME = "shared.webapi.client"
"""Every line the client pipeline writes goes to this logger, whichever module writes it."""

logger = logging.getLogger(LOGGER_NAME)


def new_request_id() -> str:
    """A fresh ``client-request-id`` (a random UUID, as Graph expects)."""
    return str(uuid.uuid4())


@dataclass
class Exchange:
    """A request and its progress across sends (mutable: the pipeline updates it)."""

    method: str
    url: httpx.URL
    json: Any
    content: bytes | None
    headers: Mapping[str, str]
    params: Mapping[str, str] | None
    policy: RetryPolicy
    idempotent: bool
    started: float
    attempts: int = 0
    skipped: float = 0.0  # waits skipped with wait=False still count toward the time bound
    refreshed: bool = False
    request_id: str = ""

    @property
    def path(self) -> str:
        """The URL's path: what log lines and errors name (never the query string)."""
        return self.url.path

    def next_attempt(self) -> None:
        """Count one more send of the request (a resend after a 401 is not one)."""
        self.attempts += 1
        self.request_id = new_request_id()

    def send_headers(
        self, token: str, user_agent: str, throttle_priority: str | None
    ) -> dict[str, str]:
        """The headers of one send: the caller's, then ours (a caller cannot override them)."""
        sent = {
            "Accept": "application/json",
            "User-Agent": user_agent,
            **self.headers,
            "Authorization": f"Bearer {token}",
            "client-request-id": self.request_id,
            "return-client-request-id": "true",
        }
        if throttle_priority:
            sent["x-ms-throttle-priority"] = throttle_priority
        return sent

    def log_retry(self, cause: str, delay: float) -> None:
        """The one retry log line, for a status (``answered 429``) or a transport error
        (``failed: ReadTimeout``) alike."""
        logger.warning(
            "%s %s %s (client-request-id %s); retry %d/%d in %.2fs",
            self.method,
            self.path,
            cause,
            self.request_id,
            self.attempts,
            self.policy.max_attempts - 1,
            delay,
        )
