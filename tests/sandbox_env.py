"""Running the daemon against a sandbox in tests: settings per mode, platform variables
scoped to one test, and the counters the sandbox keeps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest

from sandbox.graph import GraphConfig
from sandbox.seed import (
    GRAPH_ROLES,
    PLATFORM_SETTING_NAMES,
    Seed,
    seed_default,
    settings_for,
)
from sandbox.server import Sandbox
from tests.conftest import register_secret_source

GRAPH = "https://graph.microsoft.com"


class Env:
    """A sandbox, its seed, and the app settings for a mode (platform variables scoped)."""

    def __init__(self, sandbox: Sandbox, seed: Seed, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sandbox = sandbox
        self.seed = seed
        self.state = sandbox.state
        self.graph = sandbox.graph
        self._monkeypatch = monkeypatch

    def settings(self, mode: str, **overrides: str) -> dict[str, str]:
        values = settings_for(self.seed, self.sandbox, mode)
        # IDENTITY_ENDPOINT/HEADER and the CA bundle are read by the SDKs from os.environ:
        # set them for this test only (monkeypatch undoes it).
        for name in PLATFORM_SETTING_NAMES:
            if name in values:
                self._monkeypatch.setenv(name, values[name])
        values.update(overrides)
        return values

    def endpoint_hits(self, mode: str) -> int:
        """Requests for a Graph token at the endpoint the mode uses."""
        if mode == "managed-identity":
            return self.state.counter(f"mi.requests.resource.{GRAPH}")
        return self.state.counter(f"token_requests.scope.{GRAPH}/.default")


@contextmanager
def running_sandbox(
    graph_config: GraphConfig | None = None, *, graph_roles: Iterable[str] = GRAPH_ROLES
) -> Iterator[tuple[Sandbox, Seed]]:
    """A started, seeded sandbox. End-to-end tests get GraphConfig's defaults unless they pass
    a config: strict, with the replication delay on (1 s). ``graph_roles``: the Graph
    permissions consented to the app (GRAPH_ROLES_WITHOUT_LIFECYCLE for an app that may not
    read employeeLeaveDateTime)."""
    sandbox = Sandbox(graph_config=graph_config).start()
    register_secret_source(sandbox.state.secret_values)
    register_secret_source(sandbox.graph.directory.secret_values)
    try:
        yield sandbox, seed_default(sandbox, graph_roles=graph_roles)
    finally:
        sandbox.stop()
