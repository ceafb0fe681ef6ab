"""A seeded sandbox and helpers to configure the daemon against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.seed import PLATFORM_SETTING_NAMES, Seed, seed_default, settings_for
from sandbox.server import Sandbox
from tests.conftest import register_secret_source

GRAPH = "https://graph.microsoft.com"


class Env:
    """A sandbox, its seed, and the app settings for a mode (platform variables scoped)."""

    def __init__(self, sandbox: Sandbox, seed: Seed, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sandbox = sandbox
        self.seed = seed
        self.state = sandbox.state
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


def _start() -> tuple[Sandbox, Seed]:
    sandbox = Sandbox().start()
    register_secret_source(sandbox.state.secret_values)
    return sandbox, seed_default(sandbox)


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[tuple[Sandbox, Seed]]:
    sandbox, seed = _start()
    try:
        yield sandbox, seed
    finally:
        sandbox.stop()


@pytest.fixture
def env(shared_sandbox: tuple[Sandbox, Seed], monkeypatch: pytest.MonkeyPatch) -> Env:
    """The module's sandbox: tests using it must not change its state."""
    return Env(*shared_sandbox, monkeypatch)


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A sandbox of its own, for tests that change state (rotation, RBAC, faults)."""
    sandbox, seed = _start()
    try:
        yield Env(sandbox, seed, monkeypatch)
    finally:
        sandbox.stop()
