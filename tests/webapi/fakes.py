"""Test doubles for the web API tests: fake time, a fake token source and a fake "Graph".

The fake Graph implements just enough of Microsoft Graph for the client, the batch engine
and the jobs' planners, as strictly as Graph: users (create with ObjectConflict, read by id
or userPrincipalName, filter by employeeId, ``$expand=memberOf``, ``…/memberOf``, patch,
delete, ``revokeSignInSessions``), groups (create), member references (``POST
…/members/$ref``, ``PATCH /groups/{id}`` with ``members@odata.bind``, all-or-nothing, at
most 20; ``DELETE …/members/{id}/$ref``), references that must name the API's own host
and version, a replication delay (a new object is not readable or referenceable for a
while), ``$batch`` that refuses anything but a fully parallel batch as a whole (400) and
runs items in random order, and scripted or random faults (per-item 429 with Retry-After,
5xx, whole-batch failures, malformed answers, timeouts after applying).
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.webapi import ApiClient, RetryPolicy
from tests.clock import FakeClock

BASE = "https://graph.microsoft.com/v1.0"


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


_ALREADY = (
    "One or more added object references already exist for the following modified "
    "properties: 'members'."
)
_MISSING = "The source resource object or one of the objects being referenced do not exist."
_NOT_FOUND = (
    "Resource does not exist or one of its queried reference-property objects are not present."
)
_MIXED = "Batch should be either fully sequential or fully parallel."


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _json() -> dict[str, str]:
    """The headers of a JSON answer (a new dict each time: answers may be changed)."""
    return {"Content-Type": "application/json"}


# What one request gets: status, headers and the decoded JSON body (None: no body).
Answer = tuple[int, dict[str, str], Any]


@dataclass
class FakeGraph:
    """An in-memory Graph. ``handler`` is an httpx.MockTransport handler."""

    time: FakeClock = field(default_factory=FakeClock)
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
    base: str = BASE
    replication_delay: float = 0.0  # seconds a new user/group stays unreadable/unreferenceable
    strict_refs: bool = False  # a reference must name an existing user or group
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: dict[str, float] = field(default_factory=dict)
    member_adds: Counter[tuple[str, str]] = field(default_factory=Counter)
    binds: list[tuple[str, int]] = field(default_factory=list)  # (group, references) applied
    refused_batches: int = 0
    revocations: Counter[str] = field(default_factory=Counter)  # user id -> revokes applied

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

    def _apply(self, method: str, url: str, body: Any) -> Answer:
        """Apply one request to the directory (no faults): route it to its handler."""
        self.applied.append((method, url))
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        if segments[:1] == ["fail"]:
            return 400, _json(), _error("Request_BadRequest", f"{url} always fails")
        if segments[:1] == ["users"]:
            answer = self._users(method, segments[1:], query, body)
        elif segments[:1] == ["groups"]:
            answer = self._groups(method, segments[1:], body)
        else:
            answer = None
        if answer is None:
            return 404, _json(), _error("Request_ResourceNotFound", f"nothing at {url}")
        return answer

    # -- users ------------------------------------------------------------------------------

    def _users(
        self, method: str, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer | None:
        """``/users``, ``/users/{id or UPN}`` and ``/users/{id}/memberOf``."""
        if not rest:
            if method == "POST":
                return self._create_user(body)
            if method == "GET":
                return self._list_users(query)
            return None
        if len(rest) == 1:
            handlers = {
                "GET": lambda: self._get_user(rest[0], query),
                "PATCH": lambda: self._patch_user(rest[0], body),
                "DELETE": lambda: self._delete_user(rest[0]),
            }
            handler = handlers.get(method)
            return handler() if handler is not None else None
        if rest[1:] == ["memberOf"] and method == "GET":
            return self._member_of_page(rest[0])
        if rest[1:] == ["revokeSignInSessions"] and method == "POST":
            return self._revoke_sessions(rest[0])
        return None

    def _create_user(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return 400, _json(), _error("Request_BadRequest", "body must be an object")
        for user in self.users.values():
            for key in ("userPrincipalName", "employeeId"):
                if key in body and user.get(key) == body[key]:
                    return (
                        400,
                        _json(),
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
        self.created_at[new["id"]] = self.time.now
        return 201, _json(), new

    def _list_users(self, query: dict[str, list[str]]) -> Answer:
        """``$filter=<attribute> eq '<value>'`` (exact match); ``$expand=memberOf``."""
        found = [u for u in self.users.values() if self._visible(str(u["id"]))]
        for flt in query.get("$filter", []):
            key, _, value = flt.partition(" eq ")
            found = [u for u in found if str(u.get(key)) == value.strip("'")]
        return 200, _json(), {"value": [self._expanded(u, query) for u in found]}

    def _get_user(self, key: str, query: dict[str, list[str]]) -> Answer:
        """By object id, or by userPrincipalName (case-insensitive), as Graph reads a user."""
        uid = key if key in self.users else self._by_upn(key)
        if uid is None or not self._visible(uid):
            return 404, _json(), _error("Request_ResourceNotFound", f"no user {key}")
        return 200, _json(), self._expanded(self.users[uid], query)

    def _patch_user(self, uid: str, body: Any) -> Answer:
        self.users.setdefault(uid, {"id": uid}).update(body or {})
        return 204, {}, None

    def _delete_user(self, uid: str) -> Answer:
        if self.users.pop(uid, None) is None:
            return 404, _json(), _error("Request_ResourceNotFound", f"no user {uid}")
        return 204, {}, None

    def _by_upn(self, upn: str) -> str | None:
        for uid, user in self.users.items():
            if str(user.get("userPrincipalName", "")).lower() == upn.lower():
                return uid
        return None

    def _groups_of(self, uid: str) -> list[dict[str, str]]:
        """The groups ``uid`` is a direct member of, as ``memberOf`` lists them."""
        return [
            {"id": gid}
            for gid, keys in self.members.items()
            if any(k.rstrip("/").rsplit("/", 1)[-1] == uid for k in keys)
        ]

    def _expanded(self, user: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        """The user as stored; with ``memberOf`` when ``$expand`` asks for it."""
        if not any(e.startswith("memberOf") for e in query.get("$expand", [])):
            return user
        return {**user, "memberOf": self._groups_of(str(user["id"]))}

    def _member_of_page(self, uid: str) -> Answer:
        if uid not in self.users or not self._visible(uid):
            return 404, _json(), _error("Request_ResourceNotFound", f"no user {uid}")
        return 200, _json(), {"value": self._groups_of(uid)}

    def _revoke_sessions(self, uid: str) -> Answer:
        """``POST /users/{id}/revokeSignInSessions``: 200 ``{"value": true}``, counted."""
        if uid not in self.users or not self._visible(uid):
            return 404, _json(), _error("Request_ResourceNotFound", f"no user {uid}")
        self.revocations[uid] += 1
        return 200, _json(), {"value": True}

    # -- groups and member references -------------------------------------------------------

    def _groups(self, method: str, rest: list[str], body: Any) -> Answer | None:
        """``/groups``, ``/groups/{id}`` (bind), ``…/members/$ref``, ``…/members/{id}/$ref``."""
        if not rest and method == "POST":
            return self._create_group(body)
        if len(rest) == 1 and method == "PATCH":
            return self._bind(rest[0], body)
        if len(rest) == 3 and rest[1:] == ["members", "$ref"]:
            return self._add_member(rest[0], body)
        if len(rest) == 4 and rest[1] == "members" and rest[3] == "$ref" and method == "DELETE":
            return self._remove_member(rest[0], rest[2])
        return None

    def _create_group(self, body: Any) -> Answer:
        self.creates += 1
        gid = f"grp-{self.creates}"
        self.groups[gid] = {"id": gid, **(body or {})}
        self.created_at[gid] = self.time.now
        self.members.setdefault(gid, set())
        return 201, _json(), self.groups[gid]

    def _add_member(self, gid: str, body: Any) -> Answer:
        if not self._visible(gid):
            return 404, _json(), _error("Request_ResourceNotFound", _NOT_FOUND)
        refs = [(body or {}).get("@odata.id")]
        problem = self._check_refs(refs)
        if problem is not None:
            return problem
        key = self._key(str(refs[0]))
        group = self.members.setdefault(gid, set())
        if key in group:
            return 400, _json(), _error("Request_BadRequest", _ALREADY)
        group.add(key)
        self.member_adds[(gid, key)] += 1
        return 204, {}, None

    def _remove_member(self, gid: str, uid: str) -> Answer:
        group = self.members.setdefault(gid, set())
        gone = {k for k in group if k.rsplit("/", 1)[-1] == uid}
        if not gone:
            return 404, _json(), _error("Request_ResourceNotFound", _NOT_FOUND)
        group -= gone
        return 204, {}, None

    def _visible(self, object_id: str) -> bool:
        """False while a new object is still replicating."""
        born = self.created_at.get(object_id)
        return born is None or self.time.now >= born + self.replication_delay

    def _resolve(self, tail: str) -> str | None:
        """The object id a reference's last segment names (id or userPrincipalName)."""
        if tail in self.users or tail in self.groups:
            return tail
        for uid, user in self.users.items():
            if str(user.get("userPrincipalName", "")).lower() == tail.lower():
                return uid
        return None

    def _key(self, ref: str) -> str:
        tail = ref.rstrip("/").rsplit("/", 1)[-1]
        uid = self._resolve(tail)
        return f"{self.base}/directoryObjects/{uid}" if uid is not None else ref

    def _check_refs(self, refs: list[Any]) -> tuple[int, dict[str, str], Any] | None:
        json_headers = {"Content-Type": "application/json"}
        for ref in refs:
            if not isinstance(ref, str) or not ref.startswith(self.base + "/"):
                return (
                    400,
                    json_headers,
                    _error("Request_BadRequest", f"Invalid object identifier '{ref}'."),
                )
            uid = self._resolve(ref.rstrip("/").rsplit("/", 1)[-1])
            if (uid is None and self.strict_refs) or (uid is not None and not self._visible(uid)):
                return 400, json_headers, _error("Request_BadRequest", _MISSING)
        return None

    def _bind(self, gid: str, body: Any) -> tuple[int, dict[str, str], Any]:
        json_headers = {"Content-Type": "application/json"}
        if not self._visible(gid):
            return 404, json_headers, _error("Request_ResourceNotFound", _NOT_FOUND)
        refs = (body or {}).get("members@odata.bind")
        if not isinstance(refs, list) or not refs or len(refs) > 20:
            return 400, json_headers, _error("BadRequest", "members@odata.bind: 1 to 20 URLs")
        problem = self._check_refs(refs)
        if problem is not None:
            return problem
        keys = [self._key(r) for r in refs]
        group = self.members.setdefault(gid, set())
        if len(set(keys)) != len(keys) or any(k in group for k in keys):
            return 400, json_headers, _error("Request_BadRequest", _ALREADY)
        for key in keys:  # all or nothing
            group.add(key)
            self.member_adds[(gid, key)] += 1
        self.binds.append((gid, len(keys)))
        return 204, {}, None

    # -- HTTP ---------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") in self.unauthorized_tokens:
            return httpx.Response(401, json=_error("InvalidAuthenticationToken", "expired"))
        path = request.url.raw_path.decode()
        prefix = httpx.URL(self.base).path.rstrip("/")
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
        """``POST /$batch``: refuse a malformed batch as a whole, else run its items —
        with the next scripted or random whole-batch fault, before or after applying."""
        payload = json.loads(request.content)
        items: list[dict[str, Any]] = payload["requests"]
        self.batches.append(items)
        fault = self._next_batch_fault()
        refused = self._refuse_batch(items)
        if refused is not None:
            self.refused_batches += 1
            return refused
        early = self._fault_before_applying(fault, request)
        if early is not None:
            return early
        responses = self._run_items(items)
        self.rng.shuffle(responses)
        late = self._fault_after_applying(fault, request, responses)
        if late is not None:
            return late
        urls = {i["id"]: i["url"] for i in items}
        for entry in responses:
            if entry["id"] in urls:
                self._saw(urls[entry["id"]], entry["status"], entry["headers"])
        return httpx.Response(200, json={"responses": responses})

    def _next_batch_fault(self) -> str | None:
        fault = self.batch_faults.pop(0) if self.batch_faults else None
        if fault is None and self.random_batch_fault is not None:
            fault = self.random_batch_fault()
        return fault

    @staticmethod
    def _refuse_batch(items: list[dict[str, Any]]) -> httpx.Response | None:
        """Graph's 400 for a batch it will not run at all, or None."""
        ids = [i["id"] for i in items]
        if len(items) > 20 or len(set(ids)) != len(ids):
            return httpx.Response(400, json=_error("BadRequest", "invalid batch"))
        # Graph refuses a batch that is not fully parallel (or fully sequential) as a whole;
        # stricter here: the engine never sends dependsOn, so any dependsOn is refused.
        if any("dependsOn" in i or "depends_on" in i for i in items):
            return httpx.Response(400, json=_error("BadRequest", _MIXED))
        for i in items:
            has_type = any(k.lower() == "content-type" for k in i.get("headers", {}))
            if i.get("body") is not None and not has_type:
                return httpx.Response(
                    400, json=_error("BadRequest", "Content-Type header is missing")
                )
        return None

    @staticmethod
    def _fault_before_applying(fault: str | None, request: httpx.Request) -> httpx.Response | None:
        """Whole-batch faults that leave every item unapplied."""
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
        return None

    @staticmethod
    def _fault_after_applying(
        fault: str | None, request: httpx.Request, responses: list[dict[str, Any]]
    ) -> httpx.Response | None:
        """Faults after the items were applied: the answer is lost, malformed or changed
        (``missing`` and ``unknown_id`` change ``responses`` in place and return None)."""
        if fault == "503_applied":
            return httpx.Response(502, json=_error("BadGateway", "upstream died"))
        if fault == "timeout":
            raise httpx.ReadTimeout("read timed out", request=request)
        if fault == "not_json":
            return httpx.Response(200, headers={"Content-Type": "text/html"}, text="<html>oops")
        if fault in ("wrong_ctype", "truncated"):
            raw = json.dumps({"responses": responses}).encode()
            if fault == "wrong_ctype":
                return httpx.Response(200, headers={"Content-Type": "text/plain"}, content=raw)
            return httpx.Response(
                200, headers={"Content-Type": "application/json"}, content=raw[: len(raw) // 2]
            )
        if fault == "missing" and responses:
            responses.pop()
        if fault == "unknown_id" and responses:
            responses[0] = {**responses[0], "id": "999"}
        if fault == "no_responses":
            return httpx.Response(200, json={"value": []})
        return None

    def _saw(self, url: str, status: int, headers: dict[str, str]) -> None:
        """Record a 429 that reaches the client (answers lost to faults do not count)."""
        if status == 429 and "Retry-After" in headers:
            self.throttled_seen.append((url, self.time.now, float(headers["Retry-After"])))

    def _run_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Unsequenced items run concurrently in Graph, in no guaranteed order: here in a
        random order."""
        order = list(items)
        self.rng.shuffle(order)
        out: list[dict[str, Any]] = []
        for item in order:
            headers: dict[str, str]
            body_in = item.get("body")
            item_headers = {k.lower(): v for k, v in item.get("headers", {}).items()}
            if body_in is not None and "json" not in item_headers["content-type"]:
                body_in = base64.b64decode(body_in)
            status, headers, body = self.execute(item["method"], item["url"], body_in)
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
        graph.base,
        tokens or FakeTokens(),
        transport=httpx.MockTransport(graph.handler),
        retry=retry or RetryPolicy(max_attempts=4, max_total_seconds=60.0),
        sleep=graph.time.sleep,
        clock=graph.time.clock,
        rng=random.Random(1),
        **kwargs,
    )
