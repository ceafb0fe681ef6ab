"""The default world: tenants, the daemon's app registration, identities, vault and consent.

``settings_for(seed, sandbox, mode)`` gives the app settings (and the platform/SDK environment)
the daemon needs to run against the sandbox in one of its authentication modes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.server import Sandbox
from sandbox.state import (
    CERTIFICATE_USER,
    CRYPTO_USER,
    GRAPH_RESOURCE,
    PFX_CONTENT_TYPE,
    SECRETS_USER,
    TOKEN_EXCHANGE_RESOURCE,
    Tenant,
)

# Reading employeeLeaveDateTime needs User-LifeCycleInfo.Read.All, writing it
# User-LifeCycleInfo.ReadWrite.All (learn.microsoft.com/graph/api/resources/user, property
# notes); the default app has them so the sweep's leaver rule works.
LIFECYCLE_ROLES: tuple[str, ...] = ("User-LifeCycleInfo.ReadWrite.All",)
GRAPH_ROLES_WITHOUT_LIFECYCLE: tuple[str, ...] = (
    "User.ReadWrite.All",
    "Group.ReadWrite.All",
    "User.RevokeSessions.All",
    "Directory.Read.All",
)
GRAPH_ROLES: tuple[str, ...] = GRAPH_ROLES_WITHOUT_LIFECYCLE + LIFECYCLE_ROLES
# The home tenant's verified domain for new users (DAEMON_USER_DOMAIN in the demo and tests);
# every tenant also has its <name>.onmicrosoft.com.
USER_DOMAIN = "contoso.example"
CERTIFICATE_NAME = "daemon-cert"
SIGNING_CERTIFICATE_NAME = "daemon-signing-cert"
API_SCOPE = "https://graph.microsoft.com/.default"

# Stable tenant ids for the command line (``python -m sandbox serve`` / ``exec``): derived from
# the tenant's name with uuid5, so every run seeds the same ids. Job messages, run records and
# checkpoints kept in a developer's Azurite then still name tenants the next sandbox knows.
TENANT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://sandbox.graph-daemon.invalid/tenants")


def stable_tenant_id(display_name: str) -> str:
    """The fixed tenant id the command-line sandbox gives the tenant called ``display_name``."""
    return str(uuid.uuid5(TENANT_ID_NAMESPACE, display_name))


AUTH_MODES: tuple[str, ...] = (
    "managed-identity",
    "keyvault-certificate",
    "keyvault-signing",
    "federated-managed-identity",
    "client-secret",
)

# Every app setting the daemon reads (the platform/SDK variables are listed separately).
SETTING_NAMES: tuple[str, ...] = (
    "DAEMON_AUTH_MODE",
    "DAEMON_TENANT_ID",
    "DAEMON_CLIENT_ID",
    "DAEMON_ALLOWED_TENANTS",
    "DAEMON_KEY_VAULT_URL",
    "DAEMON_CERTIFICATE_NAME",
    "DAEMON_MANAGED_IDENTITY_CLIENT_ID",
    "DAEMON_API_BASE_URL",
    "DAEMON_API_SCOPE",
    "DAEMON_AUTHORITY_HOST",
    "DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
    "DAEMON_CLIENT_SECRET",
)
PLATFORM_SETTING_NAMES: tuple[str, ...] = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
)
SECRET_SETTING_NAMES: frozenset[str] = frozenset({"DAEMON_CLIENT_SECRET", "IDENTITY_HEADER"})


@dataclass(frozen=True)
class Seed:
    home_tenant_id: str
    second_tenant_id: str  # the multi-tenant app is consented here
    unconsented_tenant_id: str  # ... and not here
    client_id: str
    client_secret: str
    system_identity_object_id: str
    system_identity_client_id: str
    user_identity_object_id: str
    user_identity_client_id: str
    certificate_name: str = CERTIFICATE_NAME
    signing_certificate_name: str = SIGNING_CERTIFICATE_NAME
    graph_roles: tuple[str, ...] = GRAPH_ROLES

    @property
    def allowed_tenants(self) -> tuple[str, str]:
        return (self.home_tenant_id, self.second_tenant_id)


def seed_default(
    sandbox: Sandbox, *, graph_roles: Iterable[str] = GRAPH_ROLES, stable_tenant_ids: bool = False
) -> Seed:
    """Populate a started sandbox with the default scenario.

    ``graph_roles`` are the Graph application permissions consented to the app and the
    managed identities in every tenant; pass :data:`GRAPH_ROLES_WITHOUT_LIFECYCLE` for an app
    that may not read or write ``employeeLeaveDateTime``. Verified domains of the directory:
    ``contoso.example`` and ``contoso.onmicrosoft.com`` in the home tenant,
    ``<name>.onmicrosoft.com`` in the others. ``stable_tenant_ids`` gives the tenants the ids
    of :func:`stable_tenant_id` instead of random ones.
    """
    roles = tuple(graph_roles)
    state = sandbox.state

    def add_tenant(name: str) -> Tenant:
        return state.add_tenant(name, stable_tenant_id(name) if stable_tenant_ids else None)

    home = add_tenant("Contoso")
    second = add_tenant("Fabrikam")
    third = add_tenant("Northwind")
    state.vault_tenant_id = home.tenant_id
    directory = sandbox.graph.directory
    directory.add_verified_domains(home.tenant_id, USER_DOMAIN, home.domain)
    for tenant in (second, third):
        directory.add_verified_domains(tenant.tenant_id, tenant.domain)

    app = state.add_app("graph-daemon", home.tenant_id, multi_tenant=True)
    client_secret = state.add_client_secret(app.client_id)
    state.add_certificate_version(
        CERTIFICATE_NAME,
        exportable=True,
        content_type=PFX_CONTENT_TYPE,
        register_with_app=app.client_id,
    )
    state.add_certificate_version(
        SIGNING_CERTIFICATE_NAME,
        exportable=False,
        content_type=PFX_CONTENT_TYPE,
        register_with_app=app.client_id,
    )

    system_mi = state.add_managed_identity(
        home.tenant_id, system_assigned=True, name="graph-daemon-func"
    )
    user_mi = state.add_managed_identity(
        home.tenant_id, system_assigned=False, name="graph-daemon-identity"
    )
    state.add_federated_credential(
        app.client_id,
        issuer=state.token_issuer_url(home.tenant_id),
        subject=system_mi.object_id,
        audiences=(TOKEN_EXCHANGE_RESOURCE,),
        name="function-app-system-identity",
    )
    for mi in (system_mi, user_mi):
        state.grant_vault_role(mi.object_id, CERTIFICATE_USER, SECRETS_USER, CRYPTO_USER)
        state.consent(home.tenant_id, mi.object_id, roles, resource=GRAPH_RESOURCE)
    for tenant in (home, second):
        state.consent(tenant.tenant_id, app.client_id, roles, resource=GRAPH_RESOURCE)

    return Seed(
        home_tenant_id=home.tenant_id,
        second_tenant_id=second.tenant_id,
        unconsented_tenant_id=third.tenant_id,
        client_id=app.client_id,
        client_secret=client_secret,
        system_identity_object_id=system_mi.object_id,
        system_identity_client_id=system_mi.client_id,
        user_identity_object_id=user_mi.object_id,
        user_identity_client_id=user_mi.client_id,
        graph_roles=roles,
    )


def settings_for(
    seed: Seed, sandbox: Sandbox, mode: str, *, user_assigned_identity: bool = False
) -> dict[str, str]:
    """App settings plus platform/SDK environment for ``mode`` (one of :data:`AUTH_MODES`).

    ``user_assigned_identity`` makes the identity-using modes use the user-assigned identity
    instead of the system-assigned one.
    """
    if mode not in AUTH_MODES:
        raise ValueError(f"unknown auth mode {mode!r}; expected one of {', '.join(AUTH_MODES)}")
    url = sandbox.url
    settings: dict[str, str] = {
        "DAEMON_AUTH_MODE": mode,
        "DAEMON_TENANT_ID": seed.home_tenant_id,
        # A managed identity gets tokens in its own tenant only.
        "DAEMON_ALLOWED_TENANTS": (
            seed.home_tenant_id if mode == "managed-identity" else ",".join(seed.allowed_tenants)
        ),
        "DAEMON_API_BASE_URL": f"{url}/v1.0",
        "DAEMON_API_SCOPE": API_SCOPE,
        "DAEMON_AUTHORITY_HOST": url,
        "DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
    }
    if mode != "managed-identity":
        settings["DAEMON_CLIENT_ID"] = seed.client_id
    if mode in ("keyvault-certificate", "keyvault-signing"):
        settings["DAEMON_KEY_VAULT_URL"] = url
        settings["DAEMON_CERTIFICATE_NAME"] = (
            seed.certificate_name
            if mode == "keyvault-certificate"
            else seed.signing_certificate_name
        )
    if mode != "client-secret":
        settings["DAEMON_MANAGED_IDENTITY_CLIENT_ID"] = (
            seed.user_identity_client_id if user_assigned_identity else ""
        )
    else:
        settings["DAEMON_CLIENT_SECRET"] = seed.client_secret
    settings.update(
        {
            "IDENTITY_ENDPOINT": f"{url}/msi/token",
            "IDENTITY_HEADER": sandbox.identity_header,
            "REQUESTS_CA_BUNDLE": sandbox.ca_path,
            "SSL_CERT_FILE": sandbox.ca_path,
        }
    )
    return settings
