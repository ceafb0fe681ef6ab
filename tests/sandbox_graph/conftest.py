"""Fixtures for the sandbox directory API: a fake clock, an issuer, the service and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from sandbox.graph import GraphConfig, GraphService
from sandbox.tokens import TokenIssuer
from tests.clock import FakeClock

TENANT = "11111111-1111-1111-1111-111111111111"
API_BASE = "https://graph.test:8443/v1.0"  # what the client fixture reaches
APP = "22222222-2222-2222-2222-222222222222"
ALL_ROLES = [
    "User.ReadWrite.All",
    "Group.ReadWrite.All",
    "GroupMember.ReadWrite.All",
    "User.RevokeSessions.All",
    "User-LifeCycleInfo.ReadWrite.All",
]


@pytest.fixture(scope="session")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(issuer: TokenIssuer, clock: FakeClock) -> GraphService:
    # Unit tests of single rules: no replication delay (tests/conformance covers it).
    return GraphService(issuer, clock=clock, config=GraphConfig(replication_delay=0.0))


def make_app(service: GraphService) -> Starlette:
    return Starlette(
        routes=[
            Mount("/v1.0", routes=service.routes()),
            Mount("/_sandbox/graph", routes=service.admin_routes()),
        ]
    )


@pytest.fixture
async def client(service: GraphService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(service))
    async with httpx.AsyncClient(transport=transport, base_url=API_BASE.removesuffix("/v1.0")) as c:
        yield c


TokenFactory = Callable[..., str]


@pytest.fixture
def token(issuer: TokenIssuer) -> TokenFactory:
    def make(
        roles: list[str] | None = None,
        *,
        tenant: str = TENANT,
        app: str = APP,
        aud: str = "https://graph.microsoft.com",
        lifetime: float = 3600,
        omit_roles: bool = False,
    ) -> str:
        claims: dict[str, Any] = {
            "aud": aud,
            "iss": f"https://sts.windows.net/{tenant}/",
            "tid": tenant,
            "appid": app,
            "oid": "33333333-3333-3333-3333-333333333333",
            "idtyp": "app",
        }
        if not omit_roles:
            claims["roles"] = list(ALL_ROLES if roles is None else roles)
        return issuer.issue(claims, lifetime)[0]

    return make


@pytest.fixture
def auth(token: TokenFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {token()}"}
