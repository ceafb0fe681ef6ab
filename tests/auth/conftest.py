"""Fixtures: a seeded sandbox shared by a module, or one of a test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.seed import Seed
from sandbox.server import Sandbox
from tests.sandbox_env import GRAPH, Env, running_sandbox

__all__ = ["GRAPH", "Env"]


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[tuple[Sandbox, Seed]]:
    with running_sandbox() as started:
        yield started


@pytest.fixture
def env(shared_sandbox: tuple[Sandbox, Seed], monkeypatch: pytest.MonkeyPatch) -> Env:
    """The module's sandbox: tests using it must not change its state."""
    return Env(*shared_sandbox, monkeypatch)


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A sandbox of its own, for tests that change state (rotation, RBAC, faults)."""
    with running_sandbox() as started:
        yield Env(*started, monkeypatch)
