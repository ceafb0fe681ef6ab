"""A Graph-faithful, strict directory API for the offline sandbox.

``GraphService(issuer).routes()`` are mounted at ``/v1.0``; ``admin_routes()`` at
``/_sandbox/graph``. Where things live:

- ``service.py``: the HTTP layer (authentication, faults around a request); ``batch.py``:
  ``$batch``; ``admin.py``: the inspection API; ``responses.py``: Graph's error shape.
- ``api.py``: one operation's pipeline (route, charge, authorize, apply) and the route table,
  built once (``routes.py``); ``operation.py``: the request/answer types.
- By resource: ``users.py``, ``groups.py``, ``members.py`` (member references),
  ``delta.py``, ``paging.py``; shared by them: ``context.py``, ``query.py`` (OData options),
  ``shaping.py``, ``permissions.py``.
- ``directory.py`` (state) and ``schema.py``; ``throttle.py`` the identity-service token
  buckets; ``validation.py`` the rules of ``POST /users`` and of object references;
  ``faults.py`` fault injection; ``stats.py`` what happened.

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
