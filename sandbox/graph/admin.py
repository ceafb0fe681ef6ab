"""The sandbox's own inspection API for the directory (``/_sandbox/graph``): stats, the
directory, faults, configuration, reset and seeding. Not part of Graph."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .errors import GraphError

if TYPE_CHECKING:
    from .service import GraphService


class GraphAdmin:
    def __init__(self, service: GraphService) -> None:
        self.service = service

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/stats", self.stats, methods=["GET"]),
            Route("/directory", self.directory, methods=["GET"]),
            Route("/faults", self.faults, methods=["GET", "POST"]),
            Route("/config", self.config, methods=["GET", "POST"]),
            Route("/reset", self.reset, methods=["POST"]),
            Route("/seed", self.seed, methods=["POST"]),
        ]

    async def stats(self, request: Request) -> Response:
        body = self.service.stats.summary()
        body["buckets"] = self.service.api.throttler.snapshot()
        return admin_json(body)

    async def directory(self, request: Request) -> Response:
        tenant = request.query_params.get("tenant")
        users = request.query_params.get("users", "").lower() in ("1", "true", "yes")
        return admin_json({"tenants": self.service.directory.snapshot(tenant, users=users)})

    async def faults(self, request: Request) -> Response:
        service = self.service
        if request.method == "POST":
            values = await admin_body(request)
            if isinstance(values, Response):
                return values
            try:
                self.apply_faults(values)
            except (ValueError, TypeError) as exc:
                return admin_json({"error": str(exc)}, 400)
        return admin_json(dataclasses.asdict(service.faults.config))

    def apply_faults(self, values: dict[str, Any]) -> None:
        """The one-shot actions (revoke now, expire delta tokens, an outage, a revocation
        later), then the remaining fault settings."""
        service = self.service
        if values.pop("revoke_now", False):
            service.revoke_all_tokens()
        if values.pop("expire_delta_tokens", False):
            service.expire_delta_tokens()
        outage = values.pop("outage_seconds", None)
        if outage is not None:
            service.faults.outage_for(
                service.clock(), float(outage), float(values.pop("outage_starts_in", 0.0))
            )
        revoke_in = values.pop("revoke_in", None)
        if revoke_in is not None:
            values["revoke_tokens_at"] = service.clock() + float(revoke_in)
        service.faults.update(values)

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            values = await admin_body(request)
            if isinstance(values, Response):
                return values
            try:
                self.service.config.update(values)
            except (ValueError, TypeError) as exc:
                return admin_json({"error": str(exc)}, 400)
        return admin_json(dataclasses.asdict(self.service.config))

    async def reset(self, request: Request) -> Response:
        values = await admin_body(request)
        if isinstance(values, Response):
            return values
        self.service.reset(directory=bool(values.get("directory", False)))
        return admin_json({"reset": True})

    async def seed(self, request: Request) -> Response:
        values = await admin_body(request)
        if isinstance(values, Response):
            return values
        tenant = values.get("tenant")
        if not isinstance(tenant, str):
            return admin_json({"error": "tenant (string) is required"}, 400)
        directory = self.service.directory
        try:
            domains = values.get("verified_domains", [])
            if not isinstance(domains, list):
                raise ValueError("verified_domains must be a list of domain names")
            directory.add_verified_domains(tenant, *domains)
            users = directory.seed_users(
                tenant,
                int(values.get("users", 0)),
                leavers=int(values.get("leavers", 0)),
                disabled=int(values.get("disabled", 0)),
                domain=str(values.get("domain", "contoso.example")),
            )
            groups = directory.seed_groups(tenant, int(values.get("groups", 0)))
        except (GraphError, ValueError, TypeError) as exc:
            return admin_json({"error": str(exc)}, 400)
        return admin_json(
            {
                "users": len(users),
                "groups": [g["id"] for g in groups],
                "counts": directory.counts(tenant),
            }
        )


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
