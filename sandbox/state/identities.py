"""The principals tokens are issued to, beyond app registrations: managed identities (system-
and user-assigned), and the admin consent (app roles of a resource) granted to an app or an
identity in a tenant."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .directory import DirectoryState
from .models import GRAPH_RESOURCE, ManagedIdentity, Resource, new_guid

_SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/sandbox"


class IdentityState:
    def __init__(self, lock: threading.RLock, directory: DirectoryState) -> None:
        self._lock = lock
        self.directory = directory
        self.managed_identities: dict[str, ManagedIdentity] = {}  # by object id
        self._consent: dict[tuple[str, str, str], set[str]] = {}  # (tenant, principal, app_id)

    # ---------------------------------------------------------------- managed identities

    def add_managed_identity(
        self, tenant_id: str, *, system_assigned: bool, name: str = "sandbox-identity"
    ) -> ManagedIdentity:
        with self._lock:
            self.directory.require_tenant(tenant_id)
            if system_assigned and any(
                mi.system_assigned for mi in self.managed_identities.values()
            ):
                raise ValueError("there is already a system-assigned identity")
            resource_id = (
                f"{_SUBSCRIPTION}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
                if not system_assigned
                else f"{_SUBSCRIPTION}/providers/Microsoft.Web/sites/{name}"
            )
            mi = ManagedIdentity(
                object_id=new_guid(),
                client_id=new_guid(),
                tenant_id=tenant_id,
                system_assigned=system_assigned,
                resource_id=resource_id,
                display_name=name,
            )
            self.managed_identities[mi.object_id] = mi
            return mi

    def find_managed_identity(
        self,
        *,
        client_id: str | None = None,
        object_id: str | None = None,
        resource_id: str | None = None,
    ) -> ManagedIdentity | None:
        """The system-assigned identity when no selector is given."""
        with self._lock:
            for mi in self.managed_identities.values():
                if _selected(mi, client_id, object_id, resource_id):
                    return mi
        return None

    def identity_by_id(self, principal: str) -> ManagedIdentity | None:
        """The identity whose object id or client id is ``principal``."""
        for mi in self.managed_identities.values():
            if principal.lower() in (mi.object_id.lower(), mi.client_id.lower()):
                return mi
        return None

    # ------------------------------------------------------------------------- consent

    def _principal_key(self, tenant_id: str, principal: str) -> str:
        """Normalise an app client id or an identity's client/object id to the consent key."""
        if principal in self.directory.apps:
            self.directory.ensure_service_principal(tenant_id, principal)
            return principal
        mi = self.identity_by_id(principal)
        if mi is not None:
            if mi.tenant_id != tenant_id:
                raise ValueError(f"identity {principal} does not live in tenant {tenant_id}")
            return mi.object_id
        raise KeyError(f"unknown principal {principal!r}")

    def consent(
        self,
        tenant_id: str,
        principal: str,
        roles: Iterable[str],
        *,
        resource: str = GRAPH_RESOURCE,
    ) -> None:
        """Admin consent: grant app roles of ``resource`` to an app or managed identity."""
        with self._lock:
            self.directory.require_tenant(tenant_id)
            api = self.directory.find_resource(resource)
            if api is None:
                raise KeyError(f"unknown resource {resource!r}")
            wanted = set(roles)
            if api.app_roles is not None:
                unknown = wanted - api.app_roles
                if unknown:
                    raise ValueError(f"{api.display_name} has no app roles {sorted(unknown)}")
            key = (tenant_id, self._principal_key(tenant_id, principal), api.app_id)
            self._consent.setdefault(key, set()).update(wanted)

    def revoke_consent(
        self,
        tenant_id: str,
        principal: str,
        roles: Iterable[str] | None = None,
        *,
        resource: str = GRAPH_RESOURCE,
    ) -> None:
        with self._lock:
            api = self.directory.find_resource(resource)
            if api is None:
                raise KeyError(f"unknown resource {resource!r}")
            key = (tenant_id, self._principal_key(tenant_id, principal), api.app_id)
            if roles is None:
                self._consent.pop(key, None)
            else:
                self._consent.get(key, set()).difference_update(roles)

    def consented_roles(self, tenant_id: str, principal: str, resource: Resource) -> list[str]:
        with self._lock:
            return sorted(self._consent.get((tenant_id, principal, resource.app_id), set()))

    def forget_consent(self, tenant_id: str, app_id: str) -> None:
        """Drop every consent of an app in a tenant (its service principal was deleted)."""
        with self._lock:
            for key in [k for k in self._consent if k[0] == tenant_id and k[1] == app_id]:
                del self._consent[key]


def _selected(
    mi: ManagedIdentity, client_id: str | None, object_id: str | None, resource_id: str | None
) -> bool:
    """Whether ``mi`` is the identity the first given selector names (none: system-assigned)."""
    if client_id is not None:
        return mi.client_id.lower() == client_id.lower()
    if object_id is not None:
        return mi.object_id.lower() == object_id.lower()
    if resource_id is not None:
        return mi.resource_id.lower() == resource_id.lower()
    return mi.system_assigned
