"""Conformance of the strict sandbox with Microsoft Graph, Entra ID and Key Vault.

One test module per rule (accepted and refused cases), each over real HTTPS against a started
sandbox: its own CA, a token from its Entra ID (client credentials with the seeded app's
secret), the directory API's clock a fake one (``FakeClock`` of the sandbox_graph tests) so
replication delay and throttling windows move only when a test says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandbox.graph import GraphConfig
from sandbox.seed import GRAPH_ROLES, Seed, seed_default
from sandbox.server import Sandbox
from tests.clock import FakeClock
from tests.conftest import register_secret_source
from tests.sandbox.conftest import GRAPH_SCOPE, sdk_environment, token_endpoint

JSON = {"Content-Type": "application/json"}
PASSWORD = "Sandbox-Pa55!"


@dataclass
class Strict:
    """A started, seeded sandbox with Graph's defaults and a client of its directory API."""

    sandbox: Sandbox
    seed: Seed
    clock: FakeClock
    http: httpx.Client

    @property
    def tenant(self) -> str:
        return self.seed.home_tenant_id

    @property
    def api(self) -> str:
        """The API base as clients reach it: references must name it."""
        return f"{self.sandbox.url}/v1.0"

    def ref(self, object_id: str, entity_set: str = "directoryObjects") -> str:
        return f"{self.api}/{entity_set}/{object_id}"

    def batch(self, requests: list[dict[str, Any]]) -> httpx.Response:
        return self.http.post("/v1.0/$batch", json={"requests": requests})

    def new_user(self, alias: str, **extra: Any) -> httpx.Response:
        body = {
            "accountEnabled": True,
            "displayName": alias,
            "mailNickname": alias.replace(".", ""),
            "userPrincipalName": f"{alias}@contoso.example",
            "passwordProfile": {"password": PASSWORD},
            **extra,
        }
        return self.http.post("/v1.0/users", json=body)

    def new_group(self, name: str) -> httpx.Response:
        body = {
            "displayName": name,
            "mailEnabled": False,
            "mailNickname": name,
            "securityEnabled": True,
        }
        return self.http.post("/v1.0/groups", json=body)


def app_token(sandbox: Sandbox, seed: Seed) -> str:
    """A Graph token for the seeded app from the sandbox's token endpoint."""
    with httpx.Client(verify=sandbox.client_ssl_context(), timeout=10) as client:
        response = client.post(
            token_endpoint(sandbox, seed.home_tenant_id),
            data={
                "grant_type": "client_credentials",
                "client_id": seed.client_id,
                "client_secret": seed.client_secret,
                "scope": GRAPH_SCOPE,
            },
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


StrictFactory = Callable[..., Strict]


@pytest.fixture
def strict_factory() -> Iterator[StrictFactory]:
    started: list[tuple[Sandbox, httpx.Client]] = []

    def start(
        config: GraphConfig | None = None, *, graph_roles: Iterable[str] = GRAPH_ROLES
    ) -> Strict:
        clock = FakeClock()
        sandbox = Sandbox(graph_config=config or GraphConfig(), graph_clock=clock).start()
        register_secret_source(sandbox.state.secret_values)
        register_secret_source(sandbox.graph.directory.secret_values)
        seed = seed_default(sandbox, graph_roles=graph_roles)
        http = httpx.Client(
            base_url=sandbox.url,
            verify=sandbox.client_ssl_context(),
            timeout=10,
            headers={"Authorization": f"Bearer {app_token(sandbox, seed)}"},
        )
        started.append((sandbox, http))
        return Strict(sandbox, seed, clock, http)

    try:
        yield start
    finally:
        for sandbox, http in started:
            http.close()
            sandbox.stop()


@pytest.fixture
def strict(strict_factory: StrictFactory) -> Strict:
    """The sandbox as every end-to-end test meets it: GraphConfig's defaults."""
    return strict_factory()


@pytest.fixture
def sdk_env(monkeypatch: pytest.MonkeyPatch, strict: Strict) -> Strict:
    sdk_environment(monkeypatch, strict.sandbox)
    return strict


def graph_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Graph's error shape: ``{"error": {"code", "message", "innerError": {...}}}``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert {"date", "request-id"} <= set(error["innerError"])
    return dict(error)


def by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["responses"]}
