"""One Graph request, independent of HTTP: who calls (:class:`Caller`), what is asked
(:class:`Operation`) and the answer (:class:`Result`).

A top-level request and a ``$batch`` item are both turned into an :class:`Operation`, so every
handler sees the same shape whichever way the request arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError, error_body

JSON_ODATA = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass
class Caller:
    """The application an access token was issued to, in the tenant it was issued for."""

    tenant: str
    app_id: str
    roles: frozenset[str]


@dataclass
class Operation:
    method: str
    path: str  # relative to /v1.0, no leading slash, percent-decoded
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: Any
    api_base: str  # scheme://host:port/v1.0 as the client reached it
    in_batch: bool = False

    @property
    def url(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return self.path + (f"?{query}" if query else "")


@dataclass
class Result:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def json_result(status: int, body: Any) -> Result:
    """A JSON answer with Graph's OData content type."""
    return Result(status, body, {"Content-Type": JSON_ODATA})


def error_result(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> Result:
    return Result(status, error_body(code, message, request_id), dict(headers or {}))


def body_object(op: Operation) -> dict[str, Any]:
    """The request's JSON object body; Graph's 400 when there is none."""
    if not isinstance(op.body, dict):
        raise GraphError(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set "
            "and payload is of valid JSON format.",
        )
    return op.body


def context_url(
    op: Operation, entity_set: str, select: list[str] | None, entity: bool = False
) -> str:
    """The ``@odata.context`` of an answer about ``entity_set`` (with its ``$select``)."""
    sel = f"({','.join(select)})" if select else ""
    return f"{op.api_base}/$metadata#{entity_set}{sel}" + ("/$entity" if entity else "")
