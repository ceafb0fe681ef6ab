"""Fuzzing API answers through the HTTP client and the batch engine (httpx.MockTransport).

Whatever the API answers (truncated JSON, the wrong content type, a ``$batch`` answer with
ids missing, unknown or repeated, unexpected statuses, bogus Retry-After values, dropped
connections), the client returns an answer or raises an ApiError, and the engine gives every
operation exactly one result without raising. Time is virtual: every wait returns at once and
moves the clock, so nothing sleeps through a real back-off.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ApiError
from shared.webapi import (
    ApiClient,
    ApiResponse,
    BatchEngine,
    CreateIdentity,
    Operation,
    Outcome,
    PacingConfig,
    RetryPolicy,
)
from tests.clock import FakeClock
from tests.fuzz.strategies import FAST

BASE = "https://graph.microsoft.com/v1.0"
STATUSES = [
    200,
    201,
    202,
    204,
    301,
    400,
    401,
    403,
    404,
    409,
    412,
    418,
    424,
    429,
    500,
    502,
    503,
    504,
    599,
]
CONTENT_TYPES = [
    "application/json",
    "application/json; odata.metadata=minimal; charset=utf-8",
    "text/html",
    "text/plain",
    "application/xml",
    "",
]
RETRY_AFTER = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "0",
            "1",
            "-5",
            "1.5",
            "abc",
            "",
            "99999999999",
            "nan",
            "inf",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "1e400",
        ]
    ),
)


class Tokens:
    async def __call__(self, *, force_refresh: bool = False) -> str:
        return "fuzz-token"


def body_of(kind: str, data: st.DataObject) -> bytes:
    if kind == "json":
        return json.dumps({"value": [], "id": "x", "error": {"code": "E", "message": "m"}}).encode()
    if kind == "truncated":
        return b'{"value": [{"id": "a"'
    if kind == "empty":
        return b""
    if kind == "html":
        return b"<html><body>Service Unavailable</body></html>"
    if kind == "error-shape":
        return json.dumps(
            {"error": data.draw(st.one_of(st.none(), st.text(), st.integers()))}
        ).encode()
    return data.draw(st.binary(max_size=64))


def draw_response(request: httpx.Request, data: st.DataObject) -> httpx.Response:
    what = data.draw(
        st.sampled_from(["answer", "answer", "answer", "connect", "read-timeout", "protocol"])
    )
    if what == "connect":
        raise httpx.ConnectError("fuzz: connection refused", request=request)
    if what == "read-timeout":
        raise httpx.ReadTimeout("fuzz: read timed out", request=request)
    if what == "protocol":
        raise httpx.RemoteProtocolError("fuzz: connection reset", request=request)
    status = data.draw(st.sampled_from(STATUSES))
    headers = {}
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    retry_after = data.draw(RETRY_AFTER)
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    kind = data.draw(
        st.sampled_from(["json", "truncated", "empty", "html", "error-shape", "bytes"])
    )
    return httpx.Response(status, headers=headers, content=body_of(kind, data))


def make_client(handler: Any, time: FakeClock) -> ApiClient:
    return ApiClient(
        BASE,
        Tokens(),
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_attempts=3, max_total_seconds=60.0),
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(0),
    )


@FAST
@given(data=st.data(), method=st.sampled_from(["GET", "PATCH", "POST", "DELETE"]))
def test_client_returns_an_answer_or_raises_an_api_error(data: st.DataObject, method: str) -> None:
    time = FakeClock()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return draw_response(request, data)

    async def scenario() -> ApiResponse | ApiError:
        client = make_client(handler, time)
        try:
            body = None if method in ("GET", "DELETE") else {"department": "x"}
            return await client.request(method, "/users/u1", json=body)
        except ApiError as exc:
            return exc
        finally:
            await client.aclose()

    answer = asyncio.run(scenario())
    assert calls >= 1
    if isinstance(answer, ApiError):
        assert str(answer)
    else:
        assert isinstance(answer.status, int)


def batch_answer(request: httpx.Request, data: st.DataObject) -> httpx.Response:
    """A $batch answer: mostly well-formed with random item statuses, sometimes broken."""
    shape = data.draw(
        st.sampled_from(
            [
                "items",
                "items",
                "items",
                "missing-ids",
                "unknown-id",
                "duplicate-id",
                "not-list",
                "status-string",
                "top-level",
                "truncated",
                "wrong-ctype",
            ]
        )
    )
    if shape == "top-level":
        return draw_response(request, data)
    items = json.loads(request.content)["requests"]
    if shape == "truncated":
        return httpx.Response(
            200,
            headers={"Content-Type": "application/json"},
            content=b'{"responses": [{"id": "1", "status": 2',
        )
    if shape == "wrong-ctype":
        return httpx.Response(
            200, headers={"Content-Type": "text/html"}, content=b"<html>gateway</html>"
        )
    responses: list[dict[str, Any]] = []
    for item in items:
        status = data.draw(st.sampled_from([200, 200, 201, 204, 400, 404, 409, 424, 429, 500, 503]))
        entry: dict[str, Any] = {"id": item["id"], "status": status, "headers": {}}
        if status == 429:
            entry["headers"]["Retry-After"] = data.draw(st.sampled_from(["1", "0", "x", "-1"]))
        if status == 200:
            entry["body"] = {"id": f"obj-{item['id']}", "value": []}
        elif status >= 400:
            entry["body"] = {"error": {"code": "Request_BadRequest", "message": "fuzz"}}
        responses.append(entry)
    if shape == "missing-ids" and responses:
        del responses[data.draw(st.integers(0, len(responses) - 1))]
    elif shape == "unknown-id":
        responses.append({"id": "not-sent", "status": 200, "headers": {}})
    elif shape == "duplicate-id" and responses:
        responses.append(dict(responses[0]))
    elif shape == "status-string" and responses:
        responses[0]["status"] = str(responses[0]["status"])
    payload: Any = {"responses": responses}
    if shape == "not-list":
        payload = {"responses": {"id": "1"}}
    return httpx.Response(
        200, headers={"Content-Type": "application/json"}, content=json.dumps(payload).encode()
    )


def operations_of(kinds: list[int]) -> list[Operation]:
    ops: list[Operation] = []
    for i, kind in enumerate(kinds):
        deps = (ops[-1].id,) if ops and kind % 5 == 4 else ()
        if kind % 4 == 0:
            ops.append(Operation(f"g{i}", "GET", f"/users/u{i}", depends_on=deps))
        elif kind % 4 == 1:
            ops.append(
                Operation(
                    f"p{i}",
                    "PATCH",
                    f"/users/u{i}",
                    {"jobTitle": "x"},
                    headers={"Content-Type": "application/json"},
                    depends_on=deps,
                )
            )
        elif kind % 4 == 2:
            ops.append(
                Operation(
                    f"c{i}",
                    "POST",
                    "/users",
                    {"employeeId": f"E{i}"},
                    headers={"Content-Type": "application/json"},
                    depends_on=deps,
                    idempotency=CreateIdentity(
                        path=f"/users?$filter=employeeId eq 'E{i}'",
                        attribute="employeeId",
                        value=f"E{i}",
                    ),
                )
            )
        else:
            ops.append(
                Operation(f"d{i}", "DELETE", f"/groups/g1/members/u{i}/$ref", depends_on=deps)
            )
    return ops


@FAST
@given(data=st.data(), kinds=st.lists(st.integers(0, 19), min_size=1, max_size=30))
def test_engine_gives_every_operation_exactly_one_result(
    data: st.DataObject, kinds: list[int]
) -> None:
    time = FakeClock()
    operations = operations_of(kinds)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/$batch"):
            return batch_answer(request, data)
        return draw_response(request, data)

    async def scenario() -> list[Any]:
        client = make_client(handler, time)
        engine = BatchEngine(
            client,
            retry=RetryPolicy(max_attempts=3, max_total_seconds=120.0, base=0.1),
            pacing=PacingConfig(writes_per_second=1000, resource_units_per_second=10000),
            clock=time.clock,
            sleep=time.sleep,
            rng=random.Random(0),
        )
        try:
            report = await engine.run(operations)
        finally:
            await client.aclose()
        return list(report.results)

    results = asyncio.run(scenario())
    assert sorted(r.operation_id for r in results) == sorted(op.id for op in operations)
    assert all(isinstance(r.outcome, Outcome) for r in results)
