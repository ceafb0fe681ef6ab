"""HTTP responses of the directory API: Graph's error shape, a :class:`Result` as a response,
and a dropped connection."""

from __future__ import annotations

import json

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import error_body
from .faults import DropConnectionResponse
from .operation import JSON_ODATA, Result


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    client_request_id: str | None,
    headers: dict[str, str],
) -> Response:
    body = error_body(code, message, request_id, client_request_id)
    return Response(
        json.dumps(body), status_code=status, headers={**headers, "Content-Type": JSON_ODATA}
    )


def result_response(result: Result, base_headers: dict[str, str]) -> Response:
    headers = {**base_headers, **result.headers}
    if result.body is None:
        headers.pop("Content-Type", None)
        return Response(b"", status_code=result.status, headers=headers)
    headers["Content-Type"] = JSON_ODATA
    return Response(json.dumps(result.body), status_code=result.status, headers=headers)


class DropResponse(Response):
    """Returned by a handler to drop the connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await DropConnectionResponse()(scope, receive, send)
