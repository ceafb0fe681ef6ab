"""What every resource's handlers share: the directory, the configuration, faults, stats, the
clock, and the rule of eventual consistency (an object created through the API is invisible
until it has replicated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import GraphConfig
from .directory import Directory, TenantDirectory
from .errors import not_found
from .faults import Faults
from .operation import Caller
from .stats import GraphStats


@dataclass
class GraphContext:
    directory: Directory
    config: GraphConfig
    faults: Faults
    stats: GraphStats
    clock: Callable[[], float]

    def tenant(self, caller: Caller) -> TenantDirectory:
        return self.directory.tenant(caller.tenant)

    def replicated(self, tenant: TenantDirectory, object_id: str) -> bool:
        """Whether an object created through the API is past the replication delay.

        "Designing for eventual consistency" in the Entra docs: a read right after a create
        may not find the object yet."""
        created = tenant.created_at.get(object_id)
        if created is None:
            return True
        if self.clock() - created >= self.config.replication_delay:
            del tenant.created_at[object_id]  # replicated for good
            return True
        return False

    def visible_user(self, tenant: TenantDirectory, key: str) -> dict[str, Any]:
        """GET by id or userPrincipalName: 404 until the user has replicated."""
        user = tenant.get_user(key)
        if not self.replicated(tenant, user["id"]):
            raise not_found(key)
        return user

    def visible_group(self, tenant: TenantDirectory, key: str) -> dict[str, Any]:
        group = tenant.get_group(key)
        if not self.replicated(tenant, group["id"]):
            raise not_found(key)
        return group

    def verified_domains(self, tenant: TenantDirectory) -> set[str]:
        return tenant.verified_domains or {d.lower() for d in self.config.verified_domains}
