"""What the client hands back: one API answer, and the result of a delta query."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.errors import ApiResponseError, DeltaTokenExpiredError

__all__ = ["ApiResponse", "DeltaResult", "error_code", "error_message", "parse_json_body"]

_DELTA_EXPIRED_CODES = frozenset({"syncstatenotfound", "resyncrequired"})


def error_code(body: Any) -> str | None:
    """The OData error code of an error body (``{"error": {"code": ...}}``), if any."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping) and isinstance(err.get("code"), str):
            return str(err["code"])
    return None


def error_message(body: Any) -> str:
    """The OData error message of an error body, or a short rendering of the body."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping) and isinstance(err.get("message"), str):
            return str(err["message"])
    if body is None:
        return "no error details"
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text[:300]


def parse_json_body(content_type: str, content: bytes) -> tuple[Any, str | None]:
    """(parsed body or None, problem or None). Non-JSON content types give (None, None)."""
    if not content:
        return None, None
    if "json" not in content_type.lower():
        return None, None
    try:
        return json.loads(content), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"body is not valid JSON ({exc.__class__.__name__})"


@dataclass(frozen=True)
class ApiResponse:
    """One final answer from the API.

    ``body`` is the parsed JSON (None for empty or non-JSON bodies; ``content`` keeps the
    bytes). ``outcome_unknown`` is True when a non-idempotent request got a 5xx: it may or
    may not have been applied and was not resent.
    """

    status: int
    headers: httpx.Headers
    body: Any
    content: bytes = b""
    request_id: str = ""
    attempts: int = 1
    outcome_unknown: bool = False
    json_problem: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", ""))

    @property
    def error_code(self) -> str | None:
        return error_code(self.body)

    @property
    def error_message(self) -> str:
        return error_message(self.body)

    def raise_for_status(self) -> None:
        """ApiResponseError (DeltaTokenExpiredError for an expired delta token) unless 2xx."""
        if self.ok:
            return
        code = self.error_code
        message = f"{self.error_message} (client-request-id {self.request_id})"
        if self.status in (400, 410) and code and code.lower() in _DELTA_EXPIRED_CODES:
            raise DeltaTokenExpiredError(self.status, code, message)
        raise ApiResponseError(self.status, code, message)


@dataclass(frozen=True)
class DeltaResult:
    """All items of a delta round and the ``@odata.deltaLink`` to start the next one from."""

    items: list[dict[str, Any]]
    delta_link: str
