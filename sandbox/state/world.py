""":class:`SandboxState`: the whole mutable world of one sandbox, composed of the directory
(``directory.py``), the managed identities and consent (``identities.py``), the key vault
(``vault.py``) and the ledger of counters, secrets and token-endpoint faults (``ledger.py``).

The services read the state through this one object; tests change it through the helper
methods (add a certificate version, revoke consent, inject failures...) and read what happened
through :meth:`counters`. The flat methods are the components' own (``state.add_app is
state.directory.add_app``). All methods are thread-safe, under one lock: the server runs in a
background thread while tests mutate state from the main thread.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from sandbox.tokens import TokenIssuer

from .directory import DirectoryState
from .identities import IdentityState
from .ledger import Ledger
from .models import DEFAULT_TOKEN_LIFETIME, Tenant
from .vault import VaultState

logger = logging.getLogger("sandbox.state")


class SandboxState:
    """The whole mutable world of one sandbox."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        issuer: TokenIssuer | None = None,
        *,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        refresh_in: int | None = None,
    ) -> None:
        self.clock = clock
        self.issuer = issuer if issuer is not None else TokenIssuer(clock)
        self.token_lifetime = token_lifetime
        self.refresh_in = refresh_in
        self.identity_header = secrets.token_urlsafe(24)
        # Public base URLs, set by the server once it listens ("https://127.0.0.1:PORT" and
        # "https://localhost:PORT"). Tokens' ``iss`` always uses ``url``.
        self.url = ""
        self.alt_url = ""
        self._lock = threading.RLock()
        self.ledger = ledger = Ledger(self._lock, clock, self.issuer)
        ledger.remember_secret(self.identity_header)
        self.directory = directory = DirectoryState(self._lock, clock, ledger)
        self.identities = identities = IdentityState(self._lock, directory)
        self.vault = vault = VaultState(self._lock, clock, ledger, directory, identities)

        # The components' collections and methods, reachable as before the split.
        self.tenants = directory.tenants
        self.apps = directory.apps
        self.service_principals = directory.service_principals
        self.resources = directory.resources
        self.add_resource = directory.add_resource
        self.find_resource = directory.find_resource
        self.find_tenant = directory.find_tenant
        self.add_app = directory.add_app
        self.find_app = directory.find_app
        self.ensure_service_principal = directory.ensure_service_principal
        self.service_principal = directory.service_principal
        self.add_client_secret = directory.add_client_secret
        self.register_app_certificate = directory.register_app_certificate
        self.unregister_app_certificate = directory.unregister_app_certificate
        self.add_federated_credential = directory.add_federated_credential

        self.managed_identities = identities.managed_identities
        self.add_managed_identity = identities.add_managed_identity
        self.find_managed_identity = identities.find_managed_identity
        self.consent = identities.consent
        self.revoke_consent = identities.revoke_consent
        self.consented_roles = identities.consented_roles

        self.certificates = vault.certificates
        self.vault_secrets = vault.vault_secrets
        self.vault_roles = vault.vault_roles
        self.add_certificate_version = vault.add_certificate_version
        self.certificate_versions = vault.certificate_versions
        self.certificate_version = vault.certificate_version
        self.disable_certificate_version = vault.disable_certificate_version
        self.enable_certificate_version = vault.enable_certificate_version
        self.set_certificate_version_enabled = vault.set_certificate_version_enabled
        self.rotate_certificate = vault.rotate_certificate
        self.set_vault_secret = vault.set_vault_secret
        self.vault_secret_version = vault.vault_secret_version
        self.grant_vault_role = vault.grant_vault_role
        self.revoke_vault_role = vault.revoke_vault_role
        self.vault_allows = vault.vault_allows

        self.count = ledger.count
        self.counter = ledger.counter
        self.counters = ledger.counters
        self.reset_counters = ledger.reset_counters
        self.remember_secret = ledger.remember_secret
        self.secret_values = ledger.secret_values
        self.remember_jti = ledger.remember_jti
        self.fail_next_token_requests = ledger.fail_next_token_requests
        self.take_injected_failure = ledger.take_injected_failure

    @property
    def vault_tenant_id(self) -> str | None:
        """The tenant whose tokens the vault accepts: the first tenant added, unless set."""
        return self.vault.tenant_id

    @vault_tenant_id.setter
    def vault_tenant_id(self, tenant_id: str | None) -> None:
        self.vault.tenant_id = tenant_id

    # ----------------------------------------------------------- across components

    def add_tenant(self, display_name: str, tenant_id: str | None = None) -> Tenant:
        with self._lock:
            tenant = self.directory.add_tenant(display_name, tenant_id)
            if self.vault.tenant_id is None:
                self.vault.tenant_id = tenant.tenant_id
        return tenant

    def delete_service_principal(self, tenant_id: str, app_id: str) -> None:
        """Delete an app's service principal in a tenant, and with it every consent there."""
        with self._lock:
            self.directory.service_principals.pop((tenant_id, app_id), None)
            self.identities.forget_consent(tenant_id, app_id)

    def revoke_all_tokens(self) -> None:
        """Every access token issued so far is rejected by the sandbox's resources."""
        with self._lock:
            self.issuer.revoke_all()
        logger.info("all issued tokens revoked")

    def base_urls(self) -> tuple[str, ...]:
        return tuple(u for u in (self.url, self.alt_url) if u)

    def token_issuer_url(self, tenant_id: str) -> str:
        return f"{self.url}/{tenant_id}/v2.0"

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able summary (no secrets) for the admin API."""
        with self._lock:
            return {
                "tenants": [t.tenant_id for t in self.tenants.values()],
                "apps": [a.client_id for a in self.apps.values()],
                "managed_identities": [
                    {
                        "object_id": m.object_id,
                        "client_id": m.client_id,
                        "system_assigned": m.system_assigned,
                    }
                    for m in self.managed_identities.values()
                ],
                "certificates": {
                    name: [
                        {
                            "version": v.version,
                            "enabled": v.enabled,
                            "x5t": v.x5t,
                            "exportable": v.exportable,
                        }
                        for v in versions
                    ]
                    for name, versions in self.certificates.items()
                },
            }
