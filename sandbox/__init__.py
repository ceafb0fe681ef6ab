"""Offline, strict stand-ins for the cloud services the daemon talks to.

Entra ID (token endpoint, discovery, JWKS), the App Service managed-identity endpoint, Key
Vault and a Graph-like directory API, served over HTTPS on localhost with a throwaway CA.
Nothing in ``shared/`` imports this package: clients reach it only through configuration.

The names below are imported on first use, so ``import sandbox.azurite`` (say) does not load
the web stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.seed import Seed, seed_default, settings_for
    from sandbox.server import Sandbox
    from sandbox.state import SandboxState

__all__ = ["Sandbox", "SandboxState", "Seed", "seed_default", "settings_for"]

_HOMES = {
    "Sandbox": "sandbox.server",
    "SandboxState": "sandbox.state",
    "Seed": "sandbox.seed",
    "seed_default": "sandbox.seed",
    "settings_for": "sandbox.seed",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
