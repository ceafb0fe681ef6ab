"""The Entra directory: tenants, app registrations with their credentials (client secrets,
certificates, federated credentials), service principals, and the resources (APIs) tokens can
be requested for."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .ledger import Ledger
from .models import (
    GRAPH_APP_ID,
    GRAPH_APP_ROLES,
    GRAPH_RESOURCE,
    KEY_VAULT_APP_ID,
    KEY_VAULT_RESOURCE,
    TOKEN_EXCHANGE_APP_ID,
    TOKEN_EXCHANGE_RESOURCE,
    AppRegistration,
    ClientSecret,
    FederatedCredential,
    RegisteredKey,
    Resource,
    ServicePrincipal,
    Tenant,
    new_guid,
    thumbprints,
)


class DirectoryState:
    def __init__(self, lock: threading.RLock, clock: Callable[[], float], ledger: Ledger) -> None:
        self._lock = lock
        self.clock = clock
        self.ledger = ledger
        self.tenants: dict[str, Tenant] = {}
        self.apps: dict[str, AppRegistration] = {}
        self.service_principals: dict[tuple[str, str], ServicePrincipal] = {}  # (tenant, app)
        self.resources: dict[str, Resource] = {}
        for resource in (
            Resource(GRAPH_RESOURCE, GRAPH_APP_ID, "Microsoft Graph", GRAPH_APP_ROLES),
            Resource(KEY_VAULT_RESOURCE, KEY_VAULT_APP_ID, "Azure Key Vault", frozenset()),
            Resource(
                TOKEN_EXCHANGE_RESOURCE,
                TOKEN_EXCHANGE_APP_ID,
                "AzureADTokenExchange",
                frozenset(),
            ),
        ):
            self.add_resource(resource)

    # ----------------------------------------------------------------- resources, tenants

    def add_resource(self, resource: Resource) -> None:
        with self._lock:
            self.resources[resource.uri.rstrip("/").lower()] = resource
            self.resources[resource.app_id.lower()] = resource

    def find_resource(self, name: str) -> Resource | None:
        with self._lock:
            return self.resources.get(name.rstrip("/").lower())

    def add_tenant(self, display_name: str, tenant_id: str | None = None) -> Tenant:
        tid = tenant_id or new_guid()
        slug = "".join(ch for ch in display_name.lower() if ch.isalnum()) or "tenant"
        tenant = Tenant(tid, display_name, f"{slug}.onmicrosoft.com")
        with self._lock:
            self.tenants[tid] = tenant
        return tenant

    def find_tenant(self, name: str) -> Tenant | None:
        with self._lock:
            lowered = name.lower()
            for tenant in self.tenants.values():
                if lowered in (tenant.tenant_id.lower(), tenant.domain.lower()):
                    return tenant
        return None

    def require_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id!r}")
        return tenant

    # ------------------------------------------------------- apps, service principals

    def add_app(
        self,
        display_name: str,
        home_tenant_id: str,
        *,
        multi_tenant: bool = False,
        client_id: str | None = None,
    ) -> AppRegistration:
        """Register an app; like the portal, this creates its service principal at home."""
        with self._lock:
            self.require_tenant(home_tenant_id)
            app = AppRegistration(
                client_id=client_id or new_guid(),
                object_id=new_guid(),
                home_tenant_id=home_tenant_id,
                display_name=display_name,
                multi_tenant=multi_tenant,
            )
            self.apps[app.client_id] = app
            self.ensure_service_principal(home_tenant_id, app.client_id)
            return app

    def require_app(self, client_id: str) -> AppRegistration:
        app = self.apps.get(client_id)
        if app is None:
            raise KeyError(f"unknown app {client_id!r}")
        return app

    def find_app(self, client_id: str) -> AppRegistration | None:
        with self._lock:
            return self.apps.get(client_id.lower()) or self.apps.get(client_id)

    def ensure_service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal:
        with self._lock:
            self.require_tenant(tenant_id)
            app = self.require_app(app_id)
            key = (tenant_id, app_id)
            sp = self.service_principals.get(key)
            if sp is None:
                sp = ServicePrincipal(tenant_id, app_id, new_guid(), app.display_name)
                self.service_principals[key] = sp
            return sp

    def service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal | None:
        with self._lock:
            return self.service_principals.get((tenant_id, app_id))

    # ----------------------------------------------------------------- app credentials

    def add_client_secret(
        self, client_id: str, *, value: str | None = None, lifetime: float = 180 * 86400
    ) -> str:
        secret_value = value or secrets.token_urlsafe(30)
        with self._lock:
            app = self.require_app(client_id)
            app.secrets.append(ClientSecret(new_guid(), secret_value, self.clock() + lifetime))
            self.ledger.remember_secret(secret_value)
        return secret_value

    def register_app_certificate(
        self, client_id: str, certificate: x509.Certificate
    ) -> RegisteredKey:
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError("only RSA certificates can be registered")
        x5t, x5t_s256 = thumbprints(certificate)
        key = RegisteredKey(
            x5t=x5t,
            x5t_s256=x5t_s256,
            public_key=public_key,
            not_before=certificate.not_valid_before_utc.timestamp(),
            not_after=certificate.not_valid_after_utc.timestamp(),
        )
        with self._lock:
            app = self.require_app(client_id)
            app.keys[x5t] = key
            app.keys[x5t_s256] = key
        return key

    def unregister_app_certificate(self, client_id: str, thumbprint: str) -> None:
        """Remove a registered certificate given either of its thumbprints (x5t or x5t#S256)."""
        with self._lock:
            app = self.require_app(client_id)
            key = app.keys.get(thumbprint)
            if key is None:
                raise KeyError(f"certificate {thumbprint!r} is not registered on {client_id}")
            app.keys.pop(key.x5t, None)
            app.keys.pop(key.x5t_s256, None)

    def add_federated_credential(
        self,
        client_id: str,
        *,
        issuer: str,
        subject: str,
        audiences: Iterable[str] = (TOKEN_EXCHANGE_RESOURCE,),
        name: str = "sandbox-fic",
    ) -> FederatedCredential:
        credential = FederatedCredential(name, issuer, subject, tuple(audiences))
        with self._lock:
            self.require_app(client_id).federated_credentials.append(credential)
        return credential
