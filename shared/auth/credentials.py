"""App-only token requests, one implementation per auth mode.

Each ``request_token`` call reaches the token endpoint (or the managed-identity endpoint):
caching is the token cache's job (``shared.auth.token_cache``), one level up. The calls are
synchronous azure-identity / azure-keyvault calls; the cache runs them in a worker thread.

Modes (``DAEMON_AUTH_MODE``):
- ``managed-identity``: the Function app's identity, system- or user-assigned.
- ``keyvault-certificate``: certificate and key exported from Key Vault, assertion signed here.
- ``keyvault-signing``: assertion signed by Key Vault; the key never leaves the vault.
- ``federated-managed-identity``: the managed identity's token for
  ``api://AzureADTokenExchange`` is the client assertion (secretless, multi-tenant).
- ``client-secret``: allowed, warned against.

Certificate rotation: when the token endpoint answers ``invalid_client`` with one of
``ROTATION_CODES`` the certificate is reloaded from Key Vault and the request retried once;
a newer enabled version in Key Vault is also noticed every ``DAEMON_CERTIFICATE_CHECK_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from azure.core.credentials import AccessTokenInfo, TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import (
    ClientAssertionCredential,
    ClientSecretCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)

from shared.auth.assertion import build_client_assertion, token_endpoint
from shared.auth.codes import NO_RELOAD_CODES, ROTATION_CODES, aadsts_codes

if TYPE_CHECKING:  # the Key Vault SDKs are imported only by the modes that use them
    from shared.auth.keyvault import (
        CertificateInfo,
        KeyVaultCertificateSource,
        SigningCertificate,
    )

from shared.errors import (
    CertificateError,
    ConfigurationError,
    KeyVaultError,
    TokenRequestError,
)
from shared.settings import AuthMode, Settings

__all__ = [
    "NO_RELOAD_CODES",
    "ROTATION_CODES",
    "AppCredential",
    "create_app_credential",
    "default_key_vault_credential",
]

logger = logging.getLogger(__name__)


class AppCredential(Protocol):
    """Gets an app-only token; every call reaches the token endpoint."""

    mode: AuthMode

    def request_token(self, tenant: str, scope: str) -> AccessTokenInfo: ...

    def certificate(self) -> CertificateInfo | None:
        """The certificate in use (loading it if needed), or None for modes without one."""
        ...

    def close(self) -> None: ...


def default_key_vault_credential(settings: Settings) -> TokenCredential:
    """Key Vault is reached with the managed identity in Azure, developer credentials locally."""
    return DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)


def _summary(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    # azure-identity prefixes its own class name; keep the service's first sentence(s).
    return " ".join(text.split())[:400]


def _request(tenant: str, what: str, call: Callable[[], AccessTokenInfo]) -> AccessTokenInfo:
    """Run one token request, turning azure-identity's errors into TokenRequestError.

    Chained ``from exc``: the SDK's error keeps the status, trace and correlation ids; its
    message holds neither the secret nor the assertion (those are in the request, not shown).
    """
    try:
        return call()
    except CredentialUnavailableError as exc:
        raise TokenRequestError(
            f"{what} is not available in this environment: {_summary(exc)}"
        ) from exc
    except ClientAuthenticationError as exc:
        raise TokenRequestError(
            f"token request for tenant {tenant} with {what} was refused: {_summary(exc)}",
            aadsts_codes(str(exc)),
        ) from exc
    except ServiceRequestError as exc:
        raise TokenRequestError(
            f"token request for tenant {tenant} with {what} could not reach the endpoint: "
            f"{_summary(exc)}"
        ) from exc


class ManagedIdentityAppCredential:
    """The Function app's managed identity asks for the API's resource directly."""

    mode = AuthMode.MANAGED_IDENTITY

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        kind = "user-assigned" if settings.managed_identity_client_id else "system-assigned"
        self._what = f"the {kind} managed identity"

    def request_token(self, tenant: str, scope: str) -> AccessTokenInfo:
        if tenant != self._settings.tenant_id:
            raise ConfigurationError(
                f"a managed identity only gets tokens in its own tenant "
                f"({self._settings.tenant_id}), not {tenant}"
            )
        # A new credential per request: the cache above decides when a token is needed, so
        # the SDK's own cache must not answer a forced refresh with the old token.
        credential = ManagedIdentityCredential(client_id=self._settings.managed_identity_client_id)
        with credential:
            return _request(tenant, self._what, lambda: credential.get_token_info(scope))

    def certificate(self) -> CertificateInfo | None:
        return None

    def close(self) -> None:
        return None


class _AssertionAppCredential:
    """Shared by the modes that present a client assertion."""

    mode: AuthMode
    _what: str

    def __init__(self, settings: Settings) -> None:
        if settings.client_id is None:  # guaranteed by load_settings for these modes
            raise ConfigurationError("DAEMON_CLIENT_ID is required for assertion modes")
        self._settings = settings
        self._client_id = settings.client_id

    def _assertion(self, tenant: str) -> str:
        raise NotImplementedError

    def _post(self, tenant: str, scope: str) -> AccessTokenInfo:
        credential = ClientAssertionCredential(
            tenant,
            self._client_id,
            lambda: self._assertion(tenant),
            authority=self._settings.authority_host,
        )
        with credential:
            return _request(tenant, self._what, lambda: credential.get_token_info(scope))

    def request_token(self, tenant: str, scope: str) -> AccessTokenInfo:
        return self._post(tenant, scope)


class CertificateAppCredential(_AssertionAppCredential):
    """Certificate in Key Vault: exported (signed here) or signed in Key Vault."""

    def __init__(
        self,
        settings: Settings,
        source: KeyVaultCertificateSource,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings)
        self.mode = settings.auth_mode
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._current: SigningCertificate | None = None
        self._checked_at = 0.0
        self._what = f"certificate '{source.certificate_name}'"
        self.reloads = 0

    def _loaded(self, *, reload: bool = False) -> SigningCertificate:
        with self._lock:
            now = self._clock()
            current = self._current
            if current is not None and not reload:
                if now - self._checked_at < self._settings.certificate_check_seconds:
                    return current
                self._checked_at = now
                try:
                    if self._source.latest_version() == current.info.version:
                        return current
                    logger.info(
                        "Certificate %s has a newer version in Key Vault; reloading",
                        current.info.name,
                    )
                    self._current = self._source.load()
                except (CertificateError, KeyVaultError) as exc:
                    # a newer version that is disabled or not yet valid, or Key Vault briefly
                    # unreachable: keep the one that works, and look again at the next check
                    logger.warning(
                        "Keeping version %s of certificate %s: %s",
                        current.info.version,
                        current.info.name,
                        exc,
                    )
                    return current
                self.reloads += 1
                return self._current
            self._current = self._source.load()
            self._checked_at = now
            if current is not None:
                self.reloads += 1
            return self._current

    def certificate(self) -> CertificateInfo:
        return self._loaded().info

    def _assertion(self, tenant: str) -> str:
        current = self._loaded()
        return build_client_assertion(
            current.signer,
            audience=token_endpoint(self._settings.authority_host, tenant),
            client_id=self._client_id,
            certificate_der=current.certificate_der,
            send_x5c=self._settings.send_x5c,
            clock=self._clock,
        )

    def request_token(self, tenant: str, scope: str) -> AccessTokenInfo:
        try:
            return self._post(tenant, scope)
        except TokenRequestError as exc:
            if not ROTATION_CODES.intersection(exc.codes) or NO_RELOAD_CODES.intersection(
                exc.codes
            ):
                raise
            logger.warning(
                "Token endpoint rejected certificate %s (AADSTS%s); reloading it from Key "
                "Vault and retrying once",
                self._source.certificate_name,
                ",".join(str(c) for c in exc.codes),
            )
            before = self._current.info.version if self._current else None
            after = self._loaded(reload=True).info.version
            if before == after:
                logger.warning(
                    "Key Vault still has version %s of certificate %s; the app registration "
                    "may not list it",
                    after,
                    self._source.certificate_name,
                )
            return self._post(tenant, scope)

    def close(self) -> None:
        return None


class FederatedManagedIdentityAppCredential(_AssertionAppCredential):
    """The managed identity's token for api://AzureADTokenExchange is the assertion."""

    mode = AuthMode.FEDERATED_MANAGED_IDENTITY

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._identity = ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
        self._federation_scope = settings.federation_audience + "/.default"
        self._what = "a managed identity federated credential"

    def _assertion(self, tenant: str) -> str:
        try:
            return str(self._identity.get_token(self._federation_scope).token)
        except ClientAuthenticationError as exc:
            raise TokenRequestError(
                f"the managed identity could not get its federation token "
                f"({self._settings.federation_audience}): {_summary(exc)}"
            ) from exc

    def certificate(self) -> CertificateInfo | None:
        return None

    def close(self) -> None:
        self._identity.close()


class ClientSecretAppCredential:
    """A client secret: allowed, but a certificate or managed identity is safer."""

    mode = AuthMode.CLIENT_SECRET

    def __init__(self, settings: Settings) -> None:
        if settings.client_id is None or settings.client_secret is None:
            raise ConfigurationError(
                "client-secret mode needs DAEMON_CLIENT_ID and DAEMON_CLIENT_SECRET"
            )
        self._client_id: str = settings.client_id
        self._secret: str = settings.client_secret
        self._settings = settings
        logger.warning(
            "DAEMON_AUTH_MODE=client-secret: secrets leak and expire silently; prefer "
            "managed-identity, federated-managed-identity or a Key Vault certificate"
        )

    def request_token(self, tenant: str, scope: str) -> AccessTokenInfo:
        settings = self._settings
        credential = ClientSecretCredential(
            tenant,
            self._client_id,
            self._secret,
            authority=settings.authority_host,
            disable_instance_discovery=not settings.instance_discovery,
        )
        with credential:
            return _request(tenant, "a client secret", lambda: credential.get_token_info(scope))

    def certificate(self) -> CertificateInfo | None:
        return None

    def close(self) -> None:
        return None


def create_app_credential(
    settings: Settings,
    *,
    key_vault_credential: TokenCredential | None = None,
    clock: Callable[[], float] = time.time,
) -> AppCredential:
    """The credential for ``settings.auth_mode``. Builds clients but makes no request."""
    mode = settings.auth_mode
    if mode is AuthMode.MANAGED_IDENTITY:
        return ManagedIdentityAppCredential(settings)
    if mode is AuthMode.FEDERATED_MANAGED_IDENTITY:
        return FederatedManagedIdentityAppCredential(settings)
    if mode is AuthMode.CLIENT_SECRET:
        return ClientSecretAppCredential(settings)
    signing_mode = settings.signing_mode
    if settings.key_vault_url is None or settings.certificate_name is None or not signing_mode:
        raise ConfigurationError("certificate modes need DAEMON_KEY_VAULT_URL and a certificate")
    from shared.auth.keyvault import KeyVaultCertificateSource

    source = KeyVaultCertificateSource(
        settings.key_vault_url,
        settings.certificate_name,
        key_vault_credential or default_key_vault_credential(settings),
        signing_mode=signing_mode,
        verify_challenge_resource=settings.key_vault_verify_challenge_resource,
        clock=clock,
    )
    return CertificateAppCredential(settings, source, clock=clock)
