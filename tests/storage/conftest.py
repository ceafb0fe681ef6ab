"""A real Azurite (from the project's node_modules) for the storage tests, once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.azurite import DEV_ACCOUNT_KEY, Azurite
from tests.conftest import register_secret_source


def start_azurite() -> Iterator[Azurite]:
    """Start Azurite; its key and connection string must never appear in a log record."""
    with Azurite() as azurite:
        register_secret_source(lambda: [DEV_ACCOUNT_KEY, azurite.connection_string])
        yield azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    yield from start_azurite()
