"""A Graph-faithful, strict directory API for the offline sandbox.

``GraphService(issuer).routes()`` are mounted at ``/v1.0``; ``admin_routes()`` at
``/_sandbox/graph``. See ``service.py`` for the HTTP layer, ``api.py`` for the operations,
``throttle.py`` for the identity-service token buckets, ``validation.py`` for the rules of
``POST /users`` and of object references, and ``faults.py`` for fault injection.

Strict by default, as Graph is: ``$batch`` fully parallel or fully sequential; a replication
delay after creates (``GraphConfig.replication_delay``); the lifecycle permissions for
``employeeLeaveDateTime``; verified UPN domains, UPN characters and the password policy.
"""

from __future__ import annotations

from .config import FaultConfig, GraphConfig
from .directory import Directory, TenantDirectory
from .errors import GraphError
from .faults import ConnectionDropped, Faults
from .service import GRAPH_AUDIENCES, GraphService
from .stats import GraphStats, RetryEvent, ThrottleEvent

__all__ = [
    "GRAPH_AUDIENCES",
    "ConnectionDropped",
    "Directory",
    "FaultConfig",
    "Faults",
    "GraphConfig",
    "GraphError",
    "GraphService",
    "GraphStats",
    "RetryEvent",
    "TenantDirectory",
    "ThrottleEvent",
]
