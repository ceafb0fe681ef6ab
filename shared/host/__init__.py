"""An offline emulator of the Azure Functions host for this app's own functions.

Core Tools cannot be installed here, so tests, offline runs and the plain Linux daemon drive
``function_app.py`` through :class:`FunctionsHost`: timers, queue output bindings and queue
triggers with the storage extension's semantics (host.json ``extensions.queues``), against
Azurite or a real storage account. The emulator knows nothing of any job.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Imported on first use (PEP 562): the product imports shared.host.schedule to validate
# DAEMON_SWEEP_SCHEDULE, and must not pay for the emulator (azure-functions, storage queues)
# on its cold path.
_WHERE = {
    "HostConfigError": "config",
    "HostOptions": "config",
    "QueueOptions": "config",
    "load_host_options": "config",
    "Binding": "functions",
    "BindingError": "functions",
    "FunctionSpec": "functions",
    "app_functions": "functions",
    "DrainResult": "host",
    "FunctionsHost": "host",
    "HostError": "host",
    "QueueStats": "host",
    "Schedule": "schedule",
    "parse_schedule": "schedule",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "Binding",
    "BindingError",
    "DrainResult",
    "FunctionSpec",
    "FunctionsHost",
    "HostConfigError",
    "HostError",
    "HostOptions",
    "QueueOptions",
    "QueueStats",
    "Schedule",
    "app_functions",
    "load_host_options",
    "parse_schedule",
]
