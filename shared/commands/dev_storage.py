"""``--azurite``: run one command against a fresh in-memory Azurite.

A development option: Azurite is started from the repository's ``node_modules`` by
``sandbox.azurite``, which a deployed app does not have (``.funcignore`` leaves the
``sandbox`` package out of the package).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.errors import UsageError

if TYPE_CHECKING:
    from sandbox.azurite import Azurite

__all__ = ["with_azurite"]

_SANDBOX_MODULES = ("sandbox", "sandbox.azurite")


def _azurite_class() -> type[Azurite]:
    try:
        from sandbox.azurite import Azurite as azurite_class
    except ModuleNotFoundError as exc:
        if exc.name not in _SANDBOX_MODULES:
            raise
        raise UsageError(
            "--azurite is a development option: it starts Azurite from a clone of the "
            "repository (its sandbox package and node_modules), which this installation "
            "does not have. Set AzureWebJobsStorage to a storage account (or to a running "
            "Azurite) instead"
        ) from exc
    return azurite_class


def with_azurite(enabled: bool, run: Callable[[], int]) -> int:
    """``run()``, with ``enabled`` inside a fresh Azurite set as AzureWebJobsStorage in this
    process's environment (the functions read their settings from it); stopped on exit."""
    if not enabled:
        return int(run())
    with _azurite_class()() as azurite:
        os.environ["AzureWebJobsStorage"] = azurite.connection_string  # noqa: SIM112
        return int(run())
