"""Azurite for the host emulator tests (its own instance: tests run in seconds either way)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.azurite import Azurite
from tests.storage.conftest import start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    yield from start_azurite()
