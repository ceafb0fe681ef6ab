"""The local Functions runner: an offline emulator of the Azure Functions host for an app's
own functions.

Core Tools cannot be installed here, so tests, offline runs and the plain Linux daemon drive
the app through :class:`FunctionsHost`: timers, queue output bindings and queue triggers with
the storage extension's semantics (host.json ``extensions.queues``), against Azurite or a
real storage account. The runner knows nothing of any job and imports nothing of the app:
its caller passes the app object and host.json (``python -m shared.host`` finds them in the
app root, :mod:`shared.host.app_root`).

One module per concept:

- ``config``: host.json options; ``schedule``: timer schedules; ``functions``: the app's
  functions and bindings as the host sees them;
- ``context``: the ``Out``/``Context`` objects a function gets; ``invocation``: one call and
  its queue outputs;
- ``queues``: storage queue access; ``listener``: polling, visibility and poison handling;
  ``timers``: timer loops; ``drain`` and ``serve``: the two ways to run; ``stats``: counts;
- ``host``: :class:`FunctionsHost`, which ties them together;
- ``app_root`` and ``cli``: the command line that finds the app and runs it.
"""

from __future__ import annotations

from shared.lazy import lazy_attributes

# Imported on first use (PEP 562): the product imports shared.host.schedule to validate
# DAEMON_SWEEP_SCHEDULE, and must not pay for the emulator (azure-functions, storage queues)
# on its cold path.
_WHERE = {
    "AppRoot": "app_root",
    "find_app_root": "app_root",
    "load_app": "app_root",
    "HostConfigError": "config",
    "HostOptions": "config",
    "QueueOptions": "config",
    "load_host_options": "config",
    "DrainTiming": "drain",
    "Binding": "functions",
    "BindingError": "functions",
    "FunctionSpec": "functions",
    "app_functions": "functions",
    "FunctionsHost": "host",
    "HostError": "host",
    "QueueListener": "listener",
    "HostQueues": "queues",
    "Schedule": "schedule",
    "parse_schedule": "schedule",
    "DrainResult": "stats",
    "QueueStats": "stats",
}


__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "AppRoot",
    "Binding",
    "BindingError",
    "DrainResult",
    "DrainTiming",
    "FunctionSpec",
    "FunctionsHost",
    "HostConfigError",
    "HostError",
    "HostOptions",
    "HostQueues",
    "QueueListener",
    "QueueOptions",
    "QueueStats",
    "Schedule",
    "app_functions",
    "find_app_root",
    "load_app",
    "load_host_options",
    "parse_schedule",
]
