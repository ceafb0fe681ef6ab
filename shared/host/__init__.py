"""An offline emulator of the Azure Functions host for this app's own functions.

Core Tools cannot be installed here, so tests, offline runs and the plain Linux daemon drive
``function_app.py`` through :class:`FunctionsHost`: timers, queue output bindings and queue
triggers with the storage extension's semantics (host.json ``extensions.queues``), against
Azurite or a real storage account. The emulator knows nothing of any job.
"""

from __future__ import annotations

from shared.host.config import HostConfigError, HostOptions, QueueOptions, load_host_options
from shared.host.functions import Binding, BindingError, FunctionSpec, app_functions
from shared.host.host import DrainResult, FunctionsHost, HostError, QueueStats
from shared.host.schedule import Schedule, parse_schedule

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
