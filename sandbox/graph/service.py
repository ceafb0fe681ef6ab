"""The HTTP face of the directory API: authentication, fault injection around each request,
and the dispatch of single operations and ``$batch`` (``batch.py``); the admin API is in
``admin.py``."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.tokens import InvalidToken, TokenIssuer

from .admin import GraphAdmin
from .api import GraphApi
from .batch import BatchRunner, Envelope
from .config import FaultConfig, GraphConfig
from .directory import Directory
from .errors import new_request_id
from .faults import Faults
from .operation import Caller, Operation
from .responses import DropResponse, error_response, result_response
from .stats import GraphStats

log = logging.getLogger(__name__)

GRAPH_AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)
HTTP_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


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
        self.batch = BatchRunner(self.api)
        self.admin = GraphAdmin(self)

    @property
    def batch_rng(self) -> random.Random:
        """The seeded order in which a parallel batch's items run."""
        return self.batch.batch_rng

    # -- public helpers ----------------------------------------------------------------------
    def reset(self, *, directory: bool = False) -> None:
        """Forget stats, throttling state, page/delta tokens and faults (and the directory)."""
        self.stats.reset()
        self.api.reset()
        self.faults.reset()
        self.batch.reset()
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
        return self.admin.routes()

    # -- HTTP -----------------------------------------------------------------------------------
    async def http_operation(self, request: Request) -> Response:
        return await self.handle(request, batch=False)

    async def http_batch(self, request: Request) -> Response:
        return await self.handle(request, batch=True)

    async def handle(self, request: Request, *, batch: bool) -> Response:
        """Faults before, authentication, the operation or batch, faults after."""
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
        refused = await self.faults_before(request_id, client_request_id, base_headers)
        if refused is not None:
            return refused
        caller = self.authenticate(request)
        if isinstance(caller, Response):
            return caller
        root_path = request.scope.get("root_path", "")
        envelope = Envelope(
            caller,
            f"{request.url.scheme}://{request.url.netloc}{root_path}",
            request_id,
            client_request_id,
            base_headers,
        )
        raw = await request.body()
        throttled_before = len(stats.throttle_events)
        if batch:
            response = await self.batch.run(raw, envelope)
        else:
            response = self.run_single(request, raw, envelope)
        dropped = await self.faults_after(throttled_before)
        if dropped is not None:
            return dropped
        stats.top_level_statuses[response.status_code] += 1
        log.debug(
            "graph sandbox: %s %s -> %s", request.method, request.url.path, response.status_code
        )
        return response

    async def faults_before(
        self, request_id: str, client_request_id: str | None, base_headers: dict[str, str]
    ) -> Response | None:
        """Scheduled revocation, latency, an outage (503) or a reset before the request."""
        stats, faults = self.stats, self.faults
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
            return error_response(
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
        return None

    async def faults_after(self, throttled_before: int) -> Response | None:
        """A slow answer, or the connection reset after the request was applied."""
        stats, faults = self.stats, self.faults
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
        return None

    def run_single(self, request: Request, raw: bytes, envelope: Envelope) -> Response:
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return error_response(
                    400,
                    "BadRequest",
                    "Unable to read JSON request payload. Please ensure Content-Type header is "
                    "set and payload is of valid JSON format.",
                    envelope.request_id,
                    envelope.client_request_id,
                    envelope.base_headers,
                )
        op = Operation(
            method=request.method.upper(),
            path=str(request.path_params.get("path", "")).strip("/"),
            query=parse_qsl(request.url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            api_base=envelope.api_base,
        )
        result = self.api.execute(op, envelope.caller, envelope.request_id)
        return result_response(result, envelope.base_headers)

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
        return error_response(
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
