"""A Graph-faithful, strict directory API for the offline sandbox.

``GraphService(issuer).routes()`` are mounted at ``/v1.0``; ``admin_routes()`` at
``/_sandbox/graph``. See ``service.py`` for the HTTP layer, ``api.py`` for the operations,
``throttle.py`` for the identity-service token buckets and ``faults.py`` for fault injection.
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
