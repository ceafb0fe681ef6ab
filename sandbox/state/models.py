"""The objects of the sandbox's world and the names they are known by: tenants, app
registrations and their credentials, service principals, managed identities, resources (APIs
tokens are issued for), Key Vault certificate and secret versions, and the built-in vault
roles' data actions."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.tokens import b64url

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
