"""Graph's error shape: ``{"error": {"code", "message", "innerError": {...}, "details"?}}``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any


class GraphError(Exception):
    """An operation's failure, rendered as a Graph error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self, request_id: str, client_request_id: str | None = None) -> dict[str, Any]:
        return error_body(self.code, self.message, request_id, client_request_id, self.details)


def error_body(
    code: str,
    message: str,
    request_id: str,
    client_request_id: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "innerError": {
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
        },
    }
    if details is not None:
        error["details"] = details
    return {"error": error}


def new_request_id() -> str:
    return str(uuid.uuid4())


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(key: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def forbidden() -> GraphError:
    return GraphError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def unknown_property(name: str, type_name: str) -> GraphError:
    return GraphError(
        400, "BadRequest", f"Could not find a property named '{name}' on type '{type_name}'."
    )
