"""In-memory model of the directory, the managed identities and the key vault.

Everything the sandbox services decide is read from one :class:`SandboxState`. Tests change it
through the helper methods (add a certificate version, revoke consent, inject failures...) and
read what happened through :meth:`SandboxState.counters`. All methods are thread-safe: the
server runs in a background thread while tests mutate state from the main thread.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from sandbox.tokens import TokenIssuer, b64url

logger = logging.getLogger(__name__)

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
KEY_VAULT_RESOURCE = "https://vault.azure.net"
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
TOKEN_EXCHANGE_RESOURCE = "api://AzureADTokenExchange"
TOKEN_EXCHANGE_APP_ID = "ff8b2a9c-2a2f-4f3e-8a0e-8b2a5c7b1e61"  # sandbox-only identifier

PFX_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"

GRAPH_APP_ROLES: frozenset[str] = frozenset(
    {
        "User.Read.All",
        "User.ReadWrite.All",
        "User.RevokeSessions.All",
        "User.EnableDisableAccount.All",
        "User-LifeCycleInfo.Read.All",
        "User-LifeCycleInfo.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "AuditLog.Read.All",
        "Application.Read.All",
        "Mail.Read",
        "Mail.Send",
    }
)

CERTIFICATE_USER = "Key Vault Certificate User"
SECRETS_USER = "Key Vault Secrets User"
CRYPTO_USER = "Key Vault Crypto User"

_KV = "Microsoft.KeyVault/vaults/"
# Data actions of the built-in roles we model (subset that matters for reading and signing).
VAULT_ROLE_ACTIONS: dict[str, frozenset[str]] = {
    CERTIFICATE_USER: frozenset(
        {
            _KV + "certificates/read",
            _KV + "secrets/getSecret/action",
            _KV + "secrets/readMetadata/action",
            _KV + "keys/read",
        }
    ),
    SECRETS_USER: frozenset(
        {_KV + "secrets/getSecret/action", _KV + "secrets/readMetadata/action"}
    ),
    CRYPTO_USER: frozenset(
        {
            _KV + "keys/read",
            _KV + "keys/sign/action",
            _KV + "keys/verify/action",
            _KV + "keys/encrypt/action",
            _KV + "keys/decrypt/action",
            _KV + "keys/wrap/action",
            _KV + "keys/unwrap/action",
        }
    ),
}

DEFAULT_TOKEN_LIFETIME = 3600


class ManualClock:
    """A settable clock for tests: ``SandboxState(clock=ManualClock())``."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def new_guid() -> str:
    return str(uuid.uuid4())


def thumbprints(certificate: x509.Certificate) -> tuple[str, str]:
    """Return (x5t, x5t#S256): base64url SHA-1 and SHA-256 of the DER certificate."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha1(der).digest()), b64url(hashlib.sha256(der).digest())  # noqa: S324


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str
    domain: str


@dataclass(frozen=True)
class RegisteredKey:
    """A certificate uploaded to an app registration (only its public part)."""

    x5t: str
    x5t_s256: str
    public_key: rsa.RSAPublicKey
    not_before: float
    not_after: float

    @property
    def thumbprint_hex(self) -> str:
        return base64.urlsafe_b64decode(self.x5t + "=" * (-len(self.x5t) % 4)).hex().upper()


@dataclass
class ClientSecret:
    key_id: str
    value: str
    expires: float


@dataclass(frozen=True)
class FederatedCredential:
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]


@dataclass
class AppRegistration:
    client_id: str
    object_id: str
    home_tenant_id: str
    display_name: str
    multi_tenant: bool
    keys: dict[str, RegisteredKey] = field(default_factory=dict)  # by x5t and by x5t#S256
    secrets: list[ClientSecret] = field(default_factory=list)
    federated_credentials: list[FederatedCredential] = field(default_factory=list)


@dataclass(frozen=True)
class ServicePrincipal:
    tenant_id: str
    app_id: str
    object_id: str
    display_name: str


@dataclass(frozen=True)
class ManagedIdentity:
    object_id: str
    client_id: str
    tenant_id: str
    system_assigned: bool
    resource_id: str
    display_name: str


@dataclass(frozen=True)
class Resource:
    """An API that tokens can be requested for."""

    uri: str
    app_id: str
    display_name: str
    app_roles: frozenset[str] | None  # None: any role name is accepted


@dataclass
class CertificateVersion:
    name: str
    version: str
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    exportable: bool
    content_type: str
    enabled: bool
    created: int
    updated: int
    secret_value: str
    x5t: str
    x5t_s256: str

    @property
    def not_before(self) -> int:
        return int(self.certificate.not_valid_before_utc.timestamp())

    @property
    def not_after(self) -> int:
        return int(self.certificate.not_valid_after_utc.timestamp())

    @property
    def secret_content_type(self) -> str:
        # A non-exportable certificate's secret holds only the public certificate, as PEM.
        return self.content_type if self.exportable else PEM_CONTENT_TYPE

    @property
    def cer(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


@dataclass
class SecretVersion:
    """A plain (not certificate-backed) Key Vault secret version."""

    name: str
    version: str
    value: str
    content_type: str | None
    enabled: bool
    created: int
    updated: int


@dataclass(frozen=True)
class InjectedFailure:
    error_code: int


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
        self.vault_tenant_id: str | None = None
        # Public base URLs, set by the server once it listens ("https://127.0.0.1:PORT" and
        # "https://localhost:PORT"). Tokens' ``iss`` always uses ``url``.
        self.url = ""
        self.alt_url = ""
        self._lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {}
        self.apps: dict[str, AppRegistration] = {}
        self.service_principals: dict[tuple[str, str], ServicePrincipal] = {}  # (tenant, app)
        self.managed_identities: dict[str, ManagedIdentity] = {}  # by object id
        self.resources: dict[str, Resource] = {}
        self._consent: dict[tuple[str, str, str], set[str]] = {}  # (tenant, principal, app_id)
        self.certificates: dict[str, list[CertificateVersion]] = {}
        self.vault_secrets: dict[str, list[SecretVersion]] = {}
        self.vault_roles: dict[str, set[str]] = {}
        self._counters: Counter[str] = Counter()
        self._secret_values: set[str] = {self.identity_header}
        self._seen_jti: dict[str, float] = {}
        self._failures: list[InjectedFailure] = []
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

    # ----------------------------------------------------------------- directory objects

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
            if self.vault_tenant_id is None:
                self.vault_tenant_id = tid
        return tenant

    def find_tenant(self, name: str) -> Tenant | None:
        with self._lock:
            lowered = name.lower()
            for tenant in self.tenants.values():
                if lowered in (tenant.tenant_id.lower(), tenant.domain.lower()):
                    return tenant
        return None

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
            self._require_tenant(home_tenant_id)
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

    def ensure_service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal:
        with self._lock:
            self._require_tenant(tenant_id)
            app = self._require_app(app_id)
            key = (tenant_id, app_id)
            sp = self.service_principals.get(key)
            if sp is None:
                sp = ServicePrincipal(tenant_id, app_id, new_guid(), app.display_name)
                self.service_principals[key] = sp
            return sp

    def delete_service_principal(self, tenant_id: str, app_id: str) -> None:
        with self._lock:
            self.service_principals.pop((tenant_id, app_id), None)
            for key in [k for k in self._consent if k[0] == tenant_id and k[1] == app_id]:
                del self._consent[key]

    def service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal | None:
        with self._lock:
            return self.service_principals.get((tenant_id, app_id))

    def add_client_secret(
        self, client_id: str, *, value: str | None = None, lifetime: float = 180 * 86400
    ) -> str:
        secret_value = value or secrets.token_urlsafe(30)
        with self._lock:
            app = self._require_app(client_id)
            app.secrets.append(ClientSecret(new_guid(), secret_value, self.clock() + lifetime))
            self._secret_values.add(secret_value)
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
            app = self._require_app(client_id)
            app.keys[x5t] = key
            app.keys[x5t_s256] = key
        return key

    def unregister_app_certificate(self, client_id: str, thumbprint: str) -> None:
        """Remove a registered certificate given either of its thumbprints (x5t or x5t#S256)."""
        with self._lock:
            app = self._require_app(client_id)
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
            self._require_app(client_id).federated_credentials.append(credential)
        return credential

    def add_managed_identity(
        self, tenant_id: str, *, system_assigned: bool, name: str = "sandbox-identity"
    ) -> ManagedIdentity:
        with self._lock:
            self._require_tenant(tenant_id)
            if system_assigned and any(
                mi.system_assigned for mi in self.managed_identities.values()
            ):
                raise ValueError("there is already a system-assigned identity")
            resource_id = (
                f"/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/sandbox/"
                f"providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
                if not system_assigned
                else "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/"
                f"sandbox/providers/Microsoft.Web/sites/{name}"
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
                if client_id is not None:
                    if mi.client_id.lower() == client_id.lower():
                        return mi
                elif object_id is not None:
                    if mi.object_id.lower() == object_id.lower():
                        return mi
                elif resource_id is not None:
                    if mi.resource_id.lower() == resource_id.lower():
                        return mi
                elif mi.system_assigned:
                    return mi
        return None

    # ----------------------------------------------------------------------- consent

    def _principal_key(self, tenant_id: str, principal: str) -> str:
        """Normalise an app client id or an identity's client/object id to the consent key."""
        if principal in self.apps:
            self.ensure_service_principal(tenant_id, principal)
            return principal
        for mi in self.managed_identities.values():
            if principal.lower() in (mi.object_id.lower(), mi.client_id.lower()):
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
            self._require_tenant(tenant_id)
            api = self.find_resource(resource)
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
            api = self.find_resource(resource)
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

    # --------------------------------------------------------------------- key vault

    def add_certificate_version(
        self,
        name: str,
        *,
        exportable: bool = True,
        content_type: str = PFX_CONTENT_TYPE,
        not_before: float | None = None,
        not_after: float | None = None,
        enabled: bool = True,
        register_with_app: str | None = None,
    ) -> CertificateVersion:
        """Create a new (latest) version of a Key Vault certificate, with its key and secret."""
        if content_type not in (PFX_CONTENT_TYPE, PEM_CONTENT_TYPE):
            raise ValueError(f"unsupported certificate content type {content_type!r}")
        now = self.clock()
        nbf = now - 3600 if not_before is None else not_before
        exp = now + 365 * 86400 if not_after is None else not_after
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(int(nbf), tz=dt.timezone.utc))
            .not_valid_after(dt.datetime.fromtimestamp(int(exp), tz=dt.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(private_key, hashes.SHA256())
        )
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        if not exportable:
            secret_value = cert_pem
        elif content_type == PFX_CONTENT_TYPE:
            pfx = pkcs12.serialize_key_and_certificates(
                name.encode(), private_key, certificate, None, serialization.NoEncryption()
            )
            secret_value = base64.b64encode(pfx).decode("ascii")
        else:
            key_pem = private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii")
            secret_value = key_pem + cert_pem
        x5t, x5t_s256 = thumbprints(certificate)
        version = CertificateVersion(
            name=name,
            version=uuid.uuid4().hex,
            certificate=certificate,
            private_key=private_key,
            exportable=exportable,
            content_type=content_type,
            enabled=enabled,
            created=int(now),
            updated=int(now),
            secret_value=secret_value,
            x5t=x5t,
            x5t_s256=x5t_s256,
        )
        key_pem_text = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        with self._lock:
            self._secret_values.add(key_pem_text)
            if exportable:
                self._secret_values.add(secret_value)
            self.certificates.setdefault(name, []).append(version)
            if register_with_app is not None:
                self.register_app_certificate(register_with_app, certificate)
        logger.info(
            "certificate %s: new version %s (exportable=%s)", name, version.version, exportable
        )
        return version

    def certificate_versions(self, name: str) -> list[CertificateVersion]:
        with self._lock:
            return list(self.certificates.get(name, []))

    def certificate_version(
        self, name: str, version: str | None = None
    ) -> CertificateVersion | None:
        """``version`` None (or "") means the latest (newest) version."""
        with self._lock:
            versions = self.certificates.get(name)
            if not versions:
                return None
            if not version:
                return versions[-1]
            for candidate in versions:
                if candidate.version == version.lower():
                    return candidate
        return None

    def _require_certificate_version(self, name: str, version: str | None) -> CertificateVersion:
        found = self.certificate_version(name, version)
        if found is None:
            raise KeyError(f"certificate {name}/{version or 'latest'} not found")
        return found

    def disable_certificate_version(self, name: str, version: str | None = None) -> None:
        self.set_certificate_version_enabled(name, version, enabled=False)

    def enable_certificate_version(self, name: str, version: str | None = None) -> None:
        self.set_certificate_version_enabled(name, version, enabled=True)

    def set_certificate_version_enabled(
        self, name: str, version: str | None, *, enabled: bool
    ) -> None:
        with self._lock:
            found = self._require_certificate_version(name, version)
            found.enabled = enabled
            found.updated = int(self.clock())

    def rotate_certificate(self, name: str, *, register: bool = True) -> CertificateVersion:
        """A new version with the latest version's policy; registered on the same apps."""
        with self._lock:
            latest = self._require_certificate_version(name, None)
            apps = [app.client_id for app in self.apps.values() if latest.x5t in app.keys]
        new = self.add_certificate_version(
            name, exportable=latest.exportable, content_type=latest.content_type
        )
        if register:
            for client_id in apps:
                self.register_app_certificate(client_id, new.certificate)
        return new

    def set_vault_secret(
        self, name: str, value: str, *, content_type: str | None = None, enabled: bool = True
    ) -> SecretVersion:
        now = int(self.clock())
        version = SecretVersion(name, uuid.uuid4().hex, value, content_type, enabled, now, now)
        with self._lock:
            if name in self.certificates:
                raise ValueError(f"{name} is a certificate-backed secret")
            self.vault_secrets.setdefault(name, []).append(version)
            self._secret_values.add(value)
        return version

    def vault_secret_version(self, name: str, version: str | None = None) -> SecretVersion | None:
        with self._lock:
            versions = self.vault_secrets.get(name)
            if not versions:
                return None
            if not version:
                return versions[-1]
            for candidate in versions:
                if candidate.version == version.lower():
                    return candidate
        return None

    def _resolve_object_id(self, principal: str) -> str:
        if principal in self.apps:
            tenant = self.vault_tenant_id or self.apps[principal].home_tenant_id
            return self.ensure_service_principal(tenant, principal).object_id
        for mi in self.managed_identities.values():
            if principal.lower() in (mi.object_id.lower(), mi.client_id.lower()):
                return mi.object_id
        return principal

    def grant_vault_role(self, principal: str, *roles: str) -> None:
        """Assign vault data-plane roles to an object id (or an app/identity client id)."""
        unknown = set(roles) - set(VAULT_ROLE_ACTIONS)
        if unknown:
            raise ValueError(f"unknown vault roles {sorted(unknown)}")
        with self._lock:
            self.vault_roles.setdefault(self._resolve_object_id(principal), set()).update(roles)

    def revoke_vault_role(self, principal: str, *roles: str) -> None:
        """Remove the given roles (all roles when none are given)."""
        with self._lock:
            oid = self._resolve_object_id(principal)
            if roles:
                self.vault_roles.get(oid, set()).difference_update(roles)
            else:
                self.vault_roles.pop(oid, None)

    def vault_allows(self, object_id: str, action: str) -> bool:
        with self._lock:
            return any(
                action in VAULT_ROLE_ACTIONS[role] for role in self.vault_roles.get(object_id, ())
            )

    # ------------------------------------------------------------ assertions, faults

    def remember_jti(self, client_id: str, jti: str, expires: float) -> bool:
        """Record a client assertion id; False when it was seen before (a replay)."""
        now = self.clock()
        key = f"{client_id}:{jti}"
        with self._lock:
            for stale in [k for k, exp in self._seen_jti.items() if exp < now - 3600]:
                del self._seen_jti[stale]
            if key in self._seen_jti:
                return False
            self._seen_jti[key] = expires
            return True

    def fail_next_token_requests(self, n: int, error_code: int) -> None:
        """The next ``n`` requests to the token endpoint fail with AADSTS ``error_code``."""
        with self._lock:
            self._failures.extend(InjectedFailure(error_code) for _ in range(n))

    def take_injected_failure(self) -> InjectedFailure | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def revoke_all_tokens(self) -> None:
        """Every access token issued so far is rejected by the sandbox's resources."""
        with self._lock:
            self.issuer.revoke_all()
        logger.info("all issued tokens revoked")

    # ------------------------------------------------------- counters and secrets

    def count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._counters[key] += 1

    def counter(self, key: str) -> int:
        with self._lock:
            return self._counters[key]

    def counters(self) -> dict[str, int]:
        """All counters by key. Keys:

        ``entra.requests.<token|openid-configuration|keys>``; ``token_requests`` and
        ``token_requests.tenant.<tid>`` / ``.client.<client id>`` / ``.scope.<scope>``;
        ``tokens_issued``; ``mi.requests``, ``mi.requests.identity.<client id>``,
        ``mi.requests.resource.<resource>``, ``mi.tokens_issued``; ``kv.requests``,
        ``kv.requests.<operation>``, ``kv.challenges``, ``kv.forbidden``;
        ``rejections.AADSTS<code>``.
        """
        with self._lock:
            return dict(sorted(self._counters.items()))

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()

    def remember_secret(self, value: str) -> None:
        if value:
            with self._lock:
                self._secret_values.add(value)

    def secret_values(self) -> frozenset[str]:
        """Every secret the sandbox handed out or received (tokens, keys, assertions...)."""
        with self._lock:
            return frozenset(self._secret_values | set(self.issuer.issued))

    # --------------------------------------------------------------------- helpers

    def base_urls(self) -> tuple[str, ...]:
        return tuple(u for u in (self.url, self.alt_url) if u)

    def token_issuer_url(self, tenant_id: str) -> str:
        return f"{self.url}/{tenant_id}/v2.0"

    def _require_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id!r}")
        return tenant

    def _require_app(self, client_id: str) -> AppRegistration:
        app = self.apps.get(client_id)
        if app is None:
            raise KeyError(f"unknown app {client_id!r}")
        return app

    def find_app(self, client_id: str) -> AppRegistration | None:
        with self._lock:
            return self.apps.get(client_id.lower()) or self.apps.get(client_id)

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
