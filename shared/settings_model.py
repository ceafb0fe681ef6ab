"""The settings the daemon runs with: the frozen :class:`Settings` and its enumerations.

Many modules read a ``Settings``; only ``shared.settings.load_settings`` builds one, from the
table of app settings there (each attribute is one row of it). Import these names from
``shared.settings``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_FEDERATION_AUDIENCE",
    "FEDERATION_AUDIENCES",
    "KEY_VAULT_MODES",
    "KNOWN_AUTHORITY_HOSTS",
    "AuthMode",
    "Settings",
    "SigningMode",
]

# Microsoft's own authority hosts: instance discovery works for these and stays on.
KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)

# Audience of the managed identity's token used as a federated client assertion, per cloud.
FEDERATION_AUDIENCES = {
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
    "login.partner.microsoftonline.cn": "api://AzureADTokenExchangeChina",
}
DEFAULT_FEDERATION_AUDIENCE = "api://AzureADTokenExchange"


class AuthMode(str, enum.Enum):
    """How the daemon proves its identity to Entra ID."""

    MANAGED_IDENTITY = "managed-identity"
    KEYVAULT_CERTIFICATE = "keyvault-certificate"
    KEYVAULT_SIGNING = "keyvault-signing"
    FEDERATED_MANAGED_IDENTITY = "federated-managed-identity"
    CLIENT_SECRET = "client-secret"  # noqa: S105 - a mode name, not a secret


class SigningMode(str, enum.Enum):
    """Where the client assertion of a certificate mode is signed."""

    EXPORT = "export"  # private key exported from Key Vault, assertion signed in memory
    IN_KEY_VAULT = "in-key-vault"  # Key Vault signs; the private key never leaves it


KEY_VAULT_MODES = frozenset({AuthMode.KEYVAULT_CERTIFICATE, AuthMode.KEYVAULT_SIGNING})


@dataclass(frozen=True)
class Settings:
    """Everything the daemon reads from its app settings, validated.

    One attribute per row of ``SETTINGS`` (its name without ``DAEMON_``, lowercased); only
    :func:`load_settings` builds one, so the defaults live in the table alone.
    """

    auth_mode: AuthMode
    tenant_id: str
    client_id: str | None
    allowed_tenants: tuple[str, ...]
    key_vault_url: str | None
    certificate_name: str | None
    managed_identity_client_id: str | None
    api_base_url: str
    api_scope: str
    authority_host: str
    key_vault_verify_challenge_resource: bool
    client_secret: str | None
    send_x5c: bool
    certificate_check_seconds: float
    jobs_queue: str
    sweep_schedule: str
    user_domain: str | None
    max_changes_per_run: int
    sweep_chunk_size: int
    operations_allowed_methods: tuple[str, ...]
    operations_allowed_paths: tuple[str, ...]
    api_writes_per_second: float
    api_resource_units_per_second: float
    api_http2: bool
    api_throttle_priority: str | None
    replication_retry_seconds: float
    fleet_budget: bool

    def __repr__(self) -> str:  # never show the secret, even in a traceback's locals
        secret = "'***'" if self.client_secret else "None"
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__dataclass_fields__
            if name != "client_secret"
        )
        return f"Settings({fields}, client_secret={secret})"

    __str__ = __repr__

    @property
    def signing_mode(self) -> SigningMode | None:
        """Where the assertion is signed, for the certificate modes; else None."""
        if self.auth_mode is AuthMode.KEYVAULT_CERTIFICATE:
            return SigningMode.EXPORT
        if self.auth_mode is AuthMode.KEYVAULT_SIGNING:
            return SigningMode.IN_KEY_VAULT
        return None

    @property
    def api_resource(self) -> str:
        """The scope without its ``/.default`` suffix (what a managed identity asks for)."""
        return self.api_scope[: -len("/.default")]

    @property
    def api_host(self) -> str:
        return urlsplit(self.api_base_url).netloc.lower()

    @property
    def uses_key_vault(self) -> bool:
        return self.auth_mode in KEY_VAULT_MODES

    @property
    def instance_discovery(self) -> bool:
        """Instance discovery only works against Microsoft's own authority hosts."""
        return urlsplit(self.authority_host).hostname in KNOWN_AUTHORITY_HOSTS

    @property
    def federation_audience(self) -> str:
        host = urlsplit(self.authority_host).hostname or ""
        return FEDERATION_AUDIENCES.get(host, DEFAULT_FEDERATION_AUDIENCE)
