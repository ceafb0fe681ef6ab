"""Fixtures shared by the command-line and logging tests (test_cli, test_enqueue, test_logs):
one Azurite per module, and the test session's logging put back after main() set up its own.
Loaded as a plugin by tests/conftest.py; a directory with its own ``azurite`` fixture keeps it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sandbox.azurite import Azurite
from shared.logs import _NOISY
from tests.storage.conftest import start_azurite


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    yield from start_azurite()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() configures logging for the process: put the test session's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in _NOISY}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in noisy.items():
            logging.getLogger(name).setLevel(value)
