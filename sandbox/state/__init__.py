"""In-memory model of the directory, the managed identities and the key vault.

Everything the sandbox services decide is read from one :class:`SandboxState` (``world.py``),
composed of :class:`DirectoryState` (tenants, apps, service principals, resources),
:class:`IdentityState` (managed identities, consent), :class:`VaultState` (certificates,
secrets, vault roles) and the :class:`Ledger` (counters, secrets seen, token-endpoint faults).
The objects themselves and their constants are in ``models.py``.
"""

from __future__ import annotations

from .directory import DirectoryState
from .identities import IdentityState
from .ledger import Ledger
from .models import (
    CERTIFICATE_USER,
    CRYPTO_USER,
    DEFAULT_TOKEN_LIFETIME,
    GRAPH_APP_ID,
    GRAPH_APP_ROLES,
    GRAPH_RESOURCE,
    KEY_VAULT_APP_ID,
    KEY_VAULT_RESOURCE,
    PEM_CONTENT_TYPE,
    PFX_CONTENT_TYPE,
    SECRETS_USER,
    TOKEN_EXCHANGE_APP_ID,
    TOKEN_EXCHANGE_RESOURCE,
    VAULT_ROLE_ACTIONS,
    AppRegistration,
    CertificateVersion,
    ClientSecret,
    FederatedCredential,
    InjectedFailure,
    ManagedIdentity,
    RegisteredKey,
    Resource,
    SecretVersion,
    ServicePrincipal,
    Tenant,
    new_guid,
    thumbprints,
)
from .vault import VaultState
from .world import SandboxState

__all__ = [
    "CERTIFICATE_USER",
    "CRYPTO_USER",
    "DEFAULT_TOKEN_LIFETIME",
    "GRAPH_APP_ID",
    "GRAPH_APP_ROLES",
    "GRAPH_RESOURCE",
    "KEY_VAULT_APP_ID",
    "KEY_VAULT_RESOURCE",
    "PEM_CONTENT_TYPE",
    "PFX_CONTENT_TYPE",
    "SECRETS_USER",
    "TOKEN_EXCHANGE_APP_ID",
    "TOKEN_EXCHANGE_RESOURCE",
    "VAULT_ROLE_ACTIONS",
    "AppRegistration",
    "CertificateVersion",
    "ClientSecret",
    "DirectoryState",
    "FederatedCredential",
    "IdentityState",
    "InjectedFailure",
    "Ledger",
    "ManagedIdentity",
    "RegisteredKey",
    "Resource",
    "SandboxState",
    "SecretVersion",
    "ServicePrincipal",
    "Tenant",
    "VaultState",
    "new_guid",
    "thumbprints",
]
