"""The HTTP face of the directory API: authentication, ``$batch``, faults and the admin API."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from sandbox.tokens import InvalidToken, TokenIssuer

from .api import JSON_ODATA, Caller, GraphApi, Operation, Result
from .config import FaultConfig, GraphConfig
from .directory import Directory
from .errors import GraphError, error_body, new_request_id
from .faults import DropConnectionResponse, Faults
from .stats import GraphStats

log = logging.getLogger(__name__)

GRAPH_AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)
BATCH_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})
# learn.microsoft.com/graph/json-batching: "a batch should be either fully sequential or fully
# parallel" (its tip, confirmed by the docs team in microsoft-graph-docs #16280); Graph
# refuses anything else whole, with this message.
NOT_SEQUENTIAL_OR_PARALLEL = "Batch should be either fully sequential or fully parallel."
HTTP_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


class BatchItemError(Exception):
    """An envelope-level $batch rule was broken: the whole batch answers 400."""


class GraphService:
    """A strict, Graph-v1.0-shaped directory API for the sandbox.

    Mount :meth:`routes` at ``/v1.0`` and :meth:`admin_routes` at ``/_sandbox/graph``.
    ``$batch`` follows Graph's rules: a batch is fully parallel (items run concurrently, in a
    seeded random order) or fully sequential (one after another, 424 after a failure); any
    other shape, a dependsOn on an item not listed earlier, or a write without Content-Type
    or body is refused whole with 400. ``POST /_sandbox/graph/seed`` also takes
    ``verified_domains`` (a list) for the tenant.
    """

    def __init__(
        self,
        issuer: TokenIssuer,
        *,
        clock: Callable[[], float] = time.monotonic,
        config: GraphConfig | None = None,
        faults: FaultConfig | None = None,
    ) -> None:
        self.issuer = issuer
        self.clock = clock
        self.config = config or GraphConfig()
        self.directory = Directory()
        self.stats = GraphStats()
        self.faults = Faults(faults)
        self.api = GraphApi(self.directory, self.config, self.faults, self.stats, clock)
        self.batch_rng = random.Random(self.config.batch_seed)

    # -- public helpers ----------------------------------------------------------------------
    def reset(self, *, directory: bool = False) -> None:
        """Forget stats, throttling state, page/delta tokens and faults (and the directory)."""
        self.stats.reset()
        self.api.reset()
        self.faults.reset()
        self.batch_rng = random.Random(self.config.batch_seed)
        if directory:
            self.directory.reset()

    def expire_delta_tokens(self) -> None:
        self.api.expire_delta_tokens()

    def revoke_all_tokens(self) -> None:
        self.issuer.revoke_all()
        self.stats.faults["revoke"] += 1

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/$batch", self.http_batch, methods=["POST"]),
            Route("/{path:path}", self.http_operation, methods=HTTP_METHODS),
        ]

    def admin_routes(self) -> list[BaseRoute]:
        return [
            Route("/stats", self.admin_stats, methods=["GET"]),
            Route("/directory", self.admin_directory, methods=["GET"]),
            Route("/faults", self.admin_faults, methods=["GET", "POST"]),
            Route("/config", self.admin_config, methods=["GET", "POST"]),
            Route("/reset", self.admin_reset, methods=["POST"]),
            Route("/seed", self.admin_seed, methods=["POST"]),
        ]

    # -- HTTP: single operations ---------------------------------------------------------------
    async def http_operation(self, request: Request) -> Response:
        return await self.handle(request, batch=False)

    async def http_batch(self, request: Request) -> Response:
        return await self.handle(request, batch=True)

    async def handle(self, request: Request, *, batch: bool) -> Response:
        stats = self.stats
        stats.requests += 1
        stats.priorities[request.headers.get("x-ms-throttle-priority", "(none)")] += 1
        stats.http_versions[str(request.scope.get("http_version", "?"))] += 1
        request_id = new_request_id()
        client_request_id = request.headers.get("client-request-id")
        base_headers = {
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
        }
        faults = self.faults
        revoke_at = faults.config.revoke_tokens_at
        if revoke_at is not None and self.clock() >= revoke_at:
            faults.config.revoke_tokens_at = None
            self.revoke_all_tokens()
            log.info("graph sandbox: all tokens revoked by fault schedule")
        latency = faults.request_latency()
        if latency:
            await asyncio.sleep(latency)
        if faults.in_outage(self.clock()):
            stats.faults["outage"] += 1
            stats.top_level_statuses[503] += 1
            headers = dict(base_headers)
            if faults.config.outage_retry_after is not None:
                headers["Retry-After"] = self.api.throttler.format_retry_after(
                    faults.config.outage_retry_after
                )
            return self.error_response(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
                request_id,
                client_request_id,
                headers,
            )
        if faults.reset_before():
            stats.faults["reset"] += 1
            stats.top_level_statuses[0] += 1
            return DropResponse()

        caller = self.authenticate(request)
        if isinstance(caller, Response):
            return caller
        root_path = request.scope.get("root_path", "")
        api_base = f"{request.url.scheme}://{request.url.netloc}{root_path}"
        raw = await request.body()
        throttled_before = len(stats.throttle_events)
        if batch:
            response = await self.run_batch(
                request, raw, caller, api_base, request_id, client_request_id, base_headers
            )
        else:
            response = self.run_single(
                request, raw, caller, api_base, request_id, client_request_id, base_headers
            )
        slow = faults.slow()
        if slow:
            stats.faults["slow"] += 1
            await asyncio.sleep(slow)
        if faults.reset_after():
            stats.faults["reset_after_apply"] += 1
            stats.top_level_statuses[0] += 1
            # The client never sees this response's Retry-After values: a resend of an item
            # throttled here is not "early".
            stats.forget_throttles(stats.throttle_events[throttled_before:])
            return DropResponse()
        stats.top_level_statuses[response.status_code] += 1
        log.debug(
            "graph sandbox: %s %s -> %s", request.method, request.url.path, response.status_code
        )
        return response

    def run_single(
        self,
        request: Request,
        raw: bytes,
        caller: Caller,
        api_base: str,
        request_id: str,
        client_request_id: str | None,
        base_headers: dict[str, str],
    ) -> Response:
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return self.error_response(
                    400,
                    "BadRequest",
                    "Unable to read JSON request payload. Please ensure Content-Type header is "
                    "set and payload is of valid JSON format.",
                    request_id,
                    client_request_id,
                    base_headers,
                )
        op = Operation(
            method=request.method.upper(),
            path=str(request.path_params.get("path", "")).strip("/"),
            query=parse_qsl(request.url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            api_base=api_base,
        )
        result = self.api.execute(op, caller, request_id)
        return self.result_response(result, base_headers)

    # -- HTTP: $batch -------------------------------------------------------------------------
    async def run_batch(
        self,
        request: Request,
        raw: bytes,
        caller: Caller,
        api_base: str,
        request_id: str,
        client_request_id: str | None,
        base_headers: dict[str, str],
    ) -> Response:
        self.stats.batch_requests += 1
        try:
            items = self.validate_batch(raw)
        except BatchItemError as exc:
            return self.error_response(
                400, "BadRequest", str(exc), request_id, client_request_id, base_headers
            )
        if self.faults.chance(self.faults.config.envelope_error_rate):
            self.stats.faults["envelope_5xx"] += 1
            return self.error_response(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
                request_id,
                client_request_id,
                base_headers,
            )
        self.stats.batch_items += len(items)
        self.stats.batch_sizes.append(len(items))
        per_item = self.faults.config.latency_per_item
        results: dict[str, Result] = {}
        if any(item.get("dependsOn") for item in items):
            # Fully sequential: one after another; after a failure the rest answer 424.
            self.stats.batch_shapes["sequential"] += 1
            failed: str | None = None
            for item in items:
                if failed is not None:
                    results[item["id"]] = self.failed_dependency(
                        failed, request_id, client_request_id
                    )
                    failed = item["id"]
                    continue
                if per_item:
                    await asyncio.sleep(per_item)
                result = self.run_item(item, caller, api_base, request_id, client_request_id)
                results[item["id"]] = result
                if not result.ok:
                    failed = item["id"]
        else:
            # Fully parallel: concurrently, in no guaranteed order (a seeded shuffle); the
            # batch takes about as long as its slowest item.
            self.stats.batch_shapes["parallel"] += 1
            order = list(items)
            self.batch_rng.shuffle(order)
            in_flight = 0

            async def run(item: dict[str, Any]) -> None:
                nonlocal in_flight
                in_flight += 1
                self.stats.max_items_in_flight = max(self.stats.max_items_in_flight, in_flight)
                try:
                    await asyncio.sleep(per_item)  # also yields: the items overlap
                    results[item["id"]] = self.run_item(
                        item, caller, api_base, request_id, client_request_id
                    )
                finally:
                    in_flight -= 1

            await asyncio.gather(*(run(item) for item in order))
        responses = [self.item_response(item["id"], results[item["id"]]) for item in items]
        if self.config.shuffle_batch_responses:
            self.faults.rng.shuffle(responses)
        payload = json.dumps({"responses": responses}, separators=(",", ":"))
        return Response(
            payload, status_code=200, headers={**base_headers, "Content-Type": "application/json"}
        )

    def failed_dependency(
        self, failed: str, request_id: str, client_request_id: str | None
    ) -> Result:
        self.stats.operations += 1
        self.stats.statuses[424] += 1
        return Result(
            424,
            error_body(
                "FailedDependency",
                f"The request depends on request(s) {failed} that failed.",
                request_id,
                client_request_id,
            ),
            {"Content-Type": JSON_ODATA},
        )

    def validate_batch(self, raw: bytes) -> list[dict[str, Any]]:
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            raise BatchItemError("Invalid batch payload format.") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
            raise BatchItemError("Invalid batch payload format.")
        items: list[Any] = payload["requests"]
        if not items:
            raise BatchItemError("Invalid batch payload format: the requests array is empty.")
        limit = self.config.max_batch_requests
        if len(items) > limit:
            raise BatchItemError(
                f"The number of requests in the batch ({len(items)}) exceeds the limit of {limit}."
            )
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                raise BatchItemError(
                    "Invalid batch payload format: each request must be an object."
                )
            for name in ("id", "method", "url"):
                value = item.get(name)
                if not isinstance(value, str) or not value:
                    raise BatchItemError(
                        f"Invalid batch payload format: request is missing the required "
                        f"property '{name}'."
                    )
            if item["id"] in seen:
                raise BatchItemError(f"Request Id '{item['id']}' is duplicated in the batch.")
            seen.add(item["id"])
            url = item["url"]
            if "://" in url or url.startswith("//"):
                raise BatchItemError(
                    f"Invalid request URL '{url}' for request id '{item['id']}': batch request "
                    "URLs must be relative to the version, e.g. /users."
                )
            headers = item.get("headers")
            if headers is not None and (
                not isinstance(headers, dict)
                or not all(isinstance(v, str) for v in headers.values())
            ):
                raise BatchItemError(f"Invalid headers for request id '{item['id']}'.")
            # json-batching: "When a body is included with the request, the headers object
            # must contain a value for Content-Type"; Graph refuses the whole batch. A write
            # without a body gets the same answer (the message names both; stricter reading).
            if item["method"].upper() in BODY_METHODS and (
                item.get("body") is None
                or not any(k.lower() == "content-type" for k in (headers or {}))
            ):
                raise BatchItemError(
                    f"Write request id : {item['id']} does not contain Content-Type header or body."
                )
        self.check_sequencing(items)
        return items

    def check_sequencing(self, items: list[dict[str, Any]]) -> None:
        """Graph's dependsOn rules; a refusal fails the whole batch.

        - A dependsOn must name a request listed earlier in the batch (Graph: "Invalid
          dependency for request Id ...", msgraph-sdk-dotnet-core #891; the tail of our
          message is ours).
        - The batch is fully parallel (no dependsOn) or fully sequential (request k > 0
          depends on exactly request k - 1, the first on nothing): json-batching's tip.
        """
        earlier: set[str] = set()
        for item in items:
            depends = item.get("dependsOn")
            if depends is not None:
                if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
                    raise BatchItemError(
                        f"Invalid dependency for request Id '{item['id']}': dependsOn must be "
                        "an array of request ids."
                    )
                for dep in depends:
                    if dep not in earlier:
                        raise BatchItemError(
                            f"Invalid dependency for request Id '{item['id']}': '{dep}' is not "
                            "a request listed earlier in the batch."
                        )
            earlier.add(item["id"])
        if not any(item.get("dependsOn") for item in items):
            return
        for index, item in enumerate(items):
            expected = [items[index - 1]["id"]] if index else []
            if list(item.get("dependsOn") or []) != expected:
                raise BatchItemError(NOT_SEQUENTIAL_OR_PARALLEL)

    def run_item(
        self,
        item: dict[str, Any],
        caller: Caller,
        api_base: str,
        request_id: str,
        client_request_id: str | None,
    ) -> Result:
        method = item["method"].upper()
        headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
        if method not in BATCH_METHODS:
            self.stats.operations += 1
            self.stats.statuses[405] += 1
            return Result(
                405,
                error_body(
                    "BadRequest",
                    f"Invalid method '{item['method']}'.",
                    request_id,
                    client_request_id,
                ),
                {"Content-Type": JSON_ODATA},
            )
        body = item.get("body")
        if isinstance(body, str):
            try:
                decoded = base64.b64decode(body, validate=True)
                body = json.loads(decoded) if "json" in headers.get("content-type", "") else decoded
            except (binascii.Error, ValueError):
                self.stats.operations += 1
                self.stats.statuses[400] += 1
                return Result(
                    400,
                    error_body(
                        "BadRequest",
                        "Unable to read the request body: a string body must be base64-encoded.",
                        request_id,
                        client_request_id,
                    ),
                    {"Content-Type": JSON_ODATA},
                )
        url = item["url"].lstrip("/")
        path, _, query = url.partition("?")
        op = Operation(
            method=method,
            path=unquote(path).strip("/"),
            query=parse_qsl(query, keep_blank_values=True),
            headers=headers,
            body=body,
            api_base=api_base,
            in_batch=True,
        )
        return self.api.execute(op, caller, request_id)

    def item_response(self, item_id: str, result: Result) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": item_id,
            "status": result.status,
            "headers": {"Cache-Control": "no-cache", **result.headers},
        }
        if result.body is not None:
            out["body"] = result.body
        return out

    # -- auth -----------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> Caller | Response:
        request_id = new_request_id()
        client_request_id = request.headers.get("client-request-id")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self.unauthorized("Access token is empty.", request_id, client_request_id)
        try:
            claims = self.issuer.verify(token.strip(), GRAPH_AUDIENCES)
        except InvalidToken as exc:
            reason = str(exc)
            if "expired" in reason or "not yet valid" in reason:
                message = "Lifetime validation failed, the token is expired."
            elif "revoked" in reason:
                message = "Access token has been revoked."
            elif "audience" in reason:
                message = "Invalid audience."
            else:
                message = (
                    "Invalid signature."
                    if "signature" in reason
                    else f"Access token validation failure: {reason}"
                )
            log.info("graph sandbox: rejected access token (%s)", reason)
            return self.unauthorized(message, request_id, client_request_id)
        tenant = claims.get("tid")
        app_id = claims.get("appid") or claims.get("azp")
        if not isinstance(tenant, str) or not isinstance(app_id, str):
            return self.unauthorized(
                "Access token validation failure: tid/appid claims missing.",
                request_id,
                client_request_id,
            )
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            roles = []
        return Caller(tenant, app_id, frozenset(str(r) for r in roles))

    def unauthorized(
        self, message: str, request_id: str, client_request_id: str | None
    ) -> Response:
        self.stats.auth_failures += 1
        self.stats.top_level_statuses[401] += 1
        return self.error_response(
            401,
            "InvalidAuthenticationToken",
            message,
            request_id,
            client_request_id,
            {
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
                "WWW-Authenticate": WWW_AUTHENTICATE,
            },
        )

    # -- responses -----------------------------------------------------------------------------
    def error_response(
        self,
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

    def result_response(self, result: Result, base_headers: dict[str, str]) -> Response:
        headers = {**base_headers, **result.headers}
        if result.body is None:
            headers.pop("Content-Type", None)
            return Response(b"", status_code=result.status, headers=headers)
        headers["Content-Type"] = JSON_ODATA
        return Response(json.dumps(result.body), status_code=result.status, headers=headers)

    # -- admin API ----------------------------------------------------------------------------
    async def admin_stats(self, request: Request) -> Response:
        body = self.stats.summary()
        body["buckets"] = self.api.throttler.snapshot()
        return admin_json(body)

    async def admin_directory(self, request: Request) -> Response:
        tenant = request.query_params.get("tenant")
        users = request.query_params.get("users", "").lower() in ("1", "true", "yes")
        return admin_json({"tenants": self.directory.snapshot(tenant, users=users)})

    async def admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            values = await admin_body(request)
            if isinstance(values, Response):
                return values
            try:
                if values.pop("revoke_now", False):
                    self.revoke_all_tokens()
                if values.pop("expire_delta_tokens", False):
                    self.expire_delta_tokens()
                outage = values.pop("outage_seconds", None)
                if outage is not None:
                    self.faults.outage_for(
                        self.clock(), float(outage), float(values.pop("outage_starts_in", 0.0))
                    )
                revoke_in = values.pop("revoke_in", None)
                if revoke_in is not None:
                    values["revoke_tokens_at"] = self.clock() + float(revoke_in)
                self.faults.update(values)
            except (ValueError, TypeError) as exc:
                return admin_json({"error": str(exc)}, 400)
        return admin_json(dataclasses.asdict(self.faults.config))

    async def admin_config(self, request: Request) -> Response:
        if request.method == "POST":
            values = await admin_body(request)
            if isinstance(values, Response):
                return values
            try:
                self.config.update(values)
            except (ValueError, TypeError) as exc:
                return admin_json({"error": str(exc)}, 400)
        return admin_json(dataclasses.asdict(self.config))

    async def admin_reset(self, request: Request) -> Response:
        values = await admin_body(request)
        if isinstance(values, Response):
            return values
        self.reset(directory=bool(values.get("directory", False)))
        return admin_json({"reset": True})

    async def admin_seed(self, request: Request) -> Response:
        values = await admin_body(request)
        if isinstance(values, Response):
            return values
        tenant = values.get("tenant")
        if not isinstance(tenant, str):
            return admin_json({"error": "tenant (string) is required"}, 400)
        try:
            domains = values.get("verified_domains", [])
            if not isinstance(domains, list):
                raise ValueError("verified_domains must be a list of domain names")
            self.directory.add_verified_domains(tenant, *domains)
            users = self.directory.seed_users(
                tenant,
                int(values.get("users", 0)),
                leavers=int(values.get("leavers", 0)),
                disabled=int(values.get("disabled", 0)),
                domain=str(values.get("domain", "contoso.example")),
            )
            groups = self.directory.seed_groups(tenant, int(values.get("groups", 0)))
        except (GraphError, ValueError, TypeError) as exc:
            return admin_json({"error": str(exc)}, 400)
        return admin_json(
            {
                "users": len(users),
                "groups": [g["id"] for g in groups],
                "counts": self.directory.counts(tenant),
            }
        )


class DropResponse(Response):
    """Returned by a handler to drop the connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await DropConnectionResponse()(scope, receive, send)


def admin_json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, default=str), status_code=status, media_type="application/json"
    )


async def admin_body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw:
        return {}
    try:
        values = json.loads(raw)
    except ValueError:
        return admin_json({"error": "body must be JSON"}, 400)
    if not isinstance(values, dict):
        return admin_json({"error": "body must be a JSON object"}, 400)
    return values
