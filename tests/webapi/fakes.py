"""Test doubles for the web API tests: fake time, a fake token source and a fake "Graph".

The fake Graph implements just enough of Microsoft Graph for the client and the batch
engine: users (create with ObjectConflict, read, filter by employeeId, patch, delete), group
member references, ``$batch`` with ``dependsOn``/424, and scripted or random faults (per-item
429 with Retry-After, 5xx, whole-batch failures, malformed answers, timeouts after applying).
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.webapi import ApiClient, RetryPolicy

BASE = "https://graph.microsoft.com/v1.0"


class FakeTime:
    """Virtual time: sleepers wake in deadline order, and the clock jumps to each deadline
    once the other tasks have had a chance to run. Records every requested wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._driver: asyncio.Task[None] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (self.now + max(0.0, seconds), self._seq, future))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await future

    async def _drive(self) -> None:
        while self._waiters:
            for _ in range(20):  # let runnable tasks get to their next sleep first
                await asyncio.sleep(0)
            deadline, _, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)


class FakeTokens:
    """A TokenSource: 'token-0' until a forced refresh, then 'token-1', …"""

    def __init__(self) -> None:
        self.calls: list[bool] = []
        self.generation = 0

    async def __call__(self, *, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        if force_refresh:
            self.generation += 1
        return f"token-{self.generation}"


@dataclass
class Fault:
    """What the fake answers instead of the normal result for one item attempt."""

    status: int
    retry_after: str | None = None
    apply: bool = False  # apply the operation first, then answer ``status``
    body: Any = None


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


@dataclass
class FakeGraph:
    """An in-memory Graph. ``handler`` is an httpx.MockTransport handler."""

    time: FakeTime = field(default_factory=FakeTime)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    item_faults: dict[tuple[str, str], list[Fault]] = field(default_factory=dict)
    batch_faults: list[str] = field(default_factory=list)
    random_item_fault: Callable[[str, str], Fault | None] | None = None
    random_batch_fault: Callable[[], str | None] | None = None
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    applied: list[tuple[str, str]] = field(default_factory=list)
    creates: int = 0
    throttled_seen: list[tuple[str, float, float]] = field(default_factory=list)
    unauthorized_tokens: set[str] = field(default_factory=set)

    # -- single items -------------------------------------------------------------------

    def fault(self, method: str, url: str, *faults: Fault) -> None:
        self.item_faults.setdefault((method, url), []).extend(faults)

    def _next_fault(self, method: str, url: str) -> Fault | None:
        queue = self.item_faults.get((method, url))
        if queue:
            return queue.pop(0)
        if self.random_item_fault is not None:
            return self.random_item_fault(method, url)
        return None

    def execute(self, method: str, url: str, body: Any) -> tuple[int, dict[str, str], Any]:
        """Run one request (already decoded) with faults applied."""
        self.arrivals.setdefault(url, []).append(self.time.now)
        fault = self._next_fault(method, url)
        if fault is not None and not fault.apply:
            return self._fault_answer(fault)
        result = self._apply(method, url, body)
        if fault is not None:
            return self._fault_answer(fault)
        return result

    @staticmethod
    def _fault_answer(fault: Fault) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        body = fault.body or _error(
            "TooManyRequests" if fault.status == 429 else "serviceError", f"fault {fault.status}"
        )
        return fault.status, headers, body

    def _apply(self, method: str, url: str, body: Any) -> tuple[int, dict[str, str], Any]:
        self.applied.append((method, url))
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        json_headers = {"Content-Type": "application/json"}
        if segments[:1] == ["fail"]:
            return 400, json_headers, _error("Request_BadRequest", f"{url} always fails")
        if segments == ["users"] and method == "POST":
            if not isinstance(body, dict):
                return 400, json_headers, _error("Request_BadRequest", "body must be an object")
            for user in self.users.values():
                for key in ("userPrincipalName", "employeeId"):
                    if key in body and user.get(key) == body[key]:
                        return (
                            400,
                            json_headers,
                            _error(
                                "Request_BadRequest",
                                f"Another object with the same value for property {key} "
                                "already exists.",
                                details=[{"code": "ObjectConflict", "target": key}],
                            ),
                        )
            self.creates += 1
            new = {"id": f"id-{self.creates}", **body}
            self.users[new["id"]] = new
            return 201, json_headers, new
        if segments == ["users"] and method == "GET":
            query = parse_qs(parts.query)
            found = list(self.users.values())
            for flt in query.get("$filter", []):
                key, _, value = flt.partition(" eq ")
                found = [u for u in found if str(u.get(key)) == value.strip("'")]
            return 200, json_headers, {"value": found}
        if len(segments) == 2 and segments[0] == "users":
            uid = segments[1]
            if method == "GET":
                if uid not in self.users:
                    return 404, json_headers, _error("Request_ResourceNotFound", f"no user {uid}")
                return 200, json_headers, self.users[uid]
            if method == "PATCH":
                self.users.setdefault(uid, {"id": uid}).update(body or {})
                return 204, {}, None
            if method == "DELETE":
                if self.users.pop(uid, None) is None:
                    return 404, json_headers, _error("Request_ResourceNotFound", f"no user {uid}")
                return 204, {}, None
        if len(segments) == 4 and segments[0] == "groups" and segments[2:] == ["members", "$ref"]:
            group = self.members.setdefault(segments[1], set())
            ref = str((body or {}).get("@odata.id", ""))
            if ref in group:
                return (
                    400,
                    json_headers,
                    _error(
                        "Request_BadRequest",
                        "One or more added object references already exist for the following "
                        "modified properties: 'members'.",
                    ),
                )
            group.add(ref)
            return 204, {}, None
        return 404, json_headers, _error("Request_ResourceNotFound", f"nothing at {url}")

    # -- HTTP ---------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") in self.unauthorized_tokens:
            return httpx.Response(401, json=_error("InvalidAuthenticationToken", "expired"))
        path = request.url.raw_path.decode()
        prefix = "/v1.0"
        rel = path[len(prefix) :] if path.startswith(prefix) else path
        if rel == "/$batch" and request.method == "POST":
            return self._batch(request)
        body = json.loads(request.content) if request.content else None
        status, headers, out = self.execute(request.method, rel, body)
        self._saw(rel, status, headers)
        if out is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, headers=headers, json=out)

    def _batch(self, request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        items: list[dict[str, Any]] = payload["requests"]
        self.batches.append(items)
        fault = self.batch_faults.pop(0) if self.batch_faults else None
        if fault is None and self.random_batch_fault is not None:
            fault = self.random_batch_fault()
        ids = [i["id"] for i in items]
        if len(items) > 20 or len(set(ids)) != len(ids):
            return httpx.Response(400, json=_error("BadRequest", "invalid batch"))
        if fault == "429":
            return httpx.Response(
                429, headers={"Retry-After": "2"}, json=_error("TooManyRequests", "slow down")
            )
        if fault == "503":
            return httpx.Response(503, json=_error("ServiceUnavailable", "try later"))
        if fault == "400":
            return httpx.Response(400, json=_error("BadRequest", "batch rejected"))
        if fault == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        responses = self._run_items(items)
        self.rng.shuffle(responses)
        if fault == "503_applied":
            return httpx.Response(502, json=_error("BadGateway", "upstream died"))
        if fault == "timeout":
            raise httpx.ReadTimeout("read timed out", request=request)
        if fault == "not_json":
            return httpx.Response(200, headers={"Content-Type": "text/html"}, text="<html>oops")
        if fault == "wrong_ctype":
            return httpx.Response(
                200,
                headers={"Content-Type": "text/plain"},
                content=json.dumps({"responses": responses}).encode(),
            )
        if fault == "truncated":
            raw = json.dumps({"responses": responses}).encode()
            return httpx.Response(
                200, headers={"Content-Type": "application/json"}, content=raw[: len(raw) // 2]
            )
        if fault == "missing" and responses:
            responses.pop()
        if fault == "unknown_id" and responses:
            responses[0] = {**responses[0], "id": "999"}
        if fault == "no_responses":
            return httpx.Response(200, json={"value": []})
        urls = {i["id"]: i["url"] for i in items}
        for entry in responses:
            if entry["id"] in urls:
                self._saw(urls[entry["id"]], entry["status"], entry["headers"])
        return httpx.Response(200, json={"responses": responses})

    def _saw(self, url: str, status: int, headers: dict[str, str]) -> None:
        """Record a 429 that reaches the client (answers lost to faults do not count)."""
        if status == 429 and "Retry-After" in headers:
            self.throttled_seen.append((url, self.time.now, float(headers["Retry-After"])))

    def _run_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        statuses: dict[str, int] = {}
        out: list[dict[str, Any]] = []
        for item in items:
            deps = item.get("dependsOn", [])
            headers: dict[str, str]
            if any(d not in statuses for d in deps):
                status, headers, body = 400, {}, _error("BadRequest", "dependsOn a later id")
            elif any(not 200 <= statuses[d] < 300 for d in deps):
                status, headers, body = 424, {}, _error("FailedDependency", "dependency failed")
            else:
                body_in = item.get("body")
                item_headers = {k.lower(): v for k, v in item.get("headers", {}).items()}
                if body_in is not None and "content-type" not in item_headers:
                    status, headers, body = 400, {}, _error("BadRequest", "Content-Type missing")
                else:
                    if body_in is not None and "json" not in item_headers["content-type"]:
                        body_in = base64.b64decode(body_in)
                    status, headers, body = self.execute(item["method"], item["url"], body_in)
            statuses[item["id"]] = status
            entry: dict[str, Any] = {"id": item["id"], "status": status, "headers": headers}
            if body is not None:
                entry["body"] = body
            out.append(entry)
        return out


def make_client(
    graph: FakeGraph,
    tokens: FakeTokens | None = None,
    *,
    retry: RetryPolicy | None = None,
    **kwargs: Any,
) -> ApiClient:
    return ApiClient(
        BASE,
        tokens or FakeTokens(),
        transport=httpx.MockTransport(graph.handler),
        retry=retry or RetryPolicy(max_attempts=4, max_total_seconds=60.0),
        sleep=graph.time.sleep,
        clock=graph.time.clock,
        rng=random.Random(1),
        **kwargs,
    )
