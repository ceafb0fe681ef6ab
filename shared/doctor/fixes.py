"""The fix ``doctor`` shows for an error: the setting, role or registration step to change.

Token errors are read by their AADSTS codes and Key Vault errors by their code, both named in
``shared.auth.codes`` where the credentials take them from.
"""

from __future__ import annotations

from shared.auth.codes import (
    APP_NOT_IN_TENANT_CODES,
    BAD_CLIENT_SECRET_CODES,
    CERTIFICATE_NOT_ACCEPTED_CODES,
    FEDERATION_MISMATCH_CODES,
    KEY_VAULT_WRONG_TENANT,
    TENANT_NOT_FOUND_CODES,
    UNKNOWN_AUTHORITY_CODES,
    UNKNOWN_RESOURCE_CODES,
)
from shared.errors import (
    CertificateError,
    KeyVaultAccessDeniedError,
    KeyVaultError,
    KeyVaultNotFoundError,
    SettingError,
    TenantNotAllowedError,
    TokenRequestError,
)
from shared.settings import Settings

__all__ = ["admin_consent_url", "fix_for"]

# The first set the error's codes meet gives the fix; {consent} is the admin-consent URL.
_TOKEN_FIXES: tuple[tuple[frozenset[int], str], ...] = (
    (
        APP_NOT_IN_TENANT_CODES,
        "check DAEMON_CLIENT_ID and DAEMON_TENANT_ID; for another tenant its admin must "
        "consent first{consent}",
    ),
    (
        TENANT_NOT_FOUND_CODES,
        "the tenant does not exist: check DAEMON_TENANT_ID / DAEMON_ALLOWED_TENANTS",
    ),
    (
        BAD_CLIENT_SECRET_CODES,
        "the client secret is wrong or expired: create a new one and update it",
    ),
    (
        CERTIFICATE_NOT_ACCEPTED_CODES,
        "upload the Key Vault certificate's public part to the app registration (thumbprint "
        "shown by the certificate check), or add the federated credential",
    ),
    (
        FEDERATION_MISMATCH_CODES,
        "check the app registration's federated credential: issuer, subject (the managed "
        "identity's object id) and audience api://AzureADTokenExchange must match the "
        "identity's token",
    ),
    (UNKNOWN_AUTHORITY_CODES, "check DAEMON_AUTHORITY_HOST: the authority is unknown or invalid"),
    (UNKNOWN_RESOURCE_CODES, "check DAEMON_API_SCOPE: the resource is unknown in this tenant"),
)


def admin_consent_url(settings: Settings, tenant: str) -> str:
    """Where a tenant's admin grants the app's application permissions, once."""
    if settings.client_id is None:
        raise SettingError(
            "DAEMON_CLIENT_ID", "is needed for an admin-consent URL (an app registration)"
        )
    return f"{settings.authority_host}/{tenant}/adminconsent?client_id={settings.client_id}"


def fix_for(exc: Exception, settings: Settings | None, tenant: str | None = None) -> str:
    """One line saying what to change about ``exc`` (met for ``tenant``, if given)."""
    if isinstance(exc, TokenRequestError):
        return _token_fix(exc, settings, tenant)
    return _fix_by_kind(exc) or "see the error above"


def _fix_by_kind(exc: Exception) -> str | None:
    if isinstance(exc, SettingError):
        return f"set {exc.setting} correctly (see README, Configuration)"
    if isinstance(exc, TenantNotAllowedError):
        return "add the tenant to DAEMON_ALLOWED_TENANTS after its admin has consented"
    if isinstance(exc, KeyVaultAccessDeniedError):
        return (
            "assign the role named above to the Function app's managed identity (or your "
            "developer account) on the vault: az role assignment create --role '<role>' "
            "--assignee <principal id> --scope <vault resource id>"
        )
    if isinstance(exc, KeyVaultError) and KEY_VAULT_WRONG_TENANT in str(exc):
        return (
            "the token is from another tenant than the vault's: use an identity of the vault's "
            "tenant (az login --tenant <vault tenant>, or the app's managed identity)"
        )
    if isinstance(exc, KeyVaultNotFoundError):
        return "check DAEMON_KEY_VAULT_URL and DAEMON_CERTIFICATE_NAME"
    if isinstance(exc, CertificateError):
        return (
            "renew or enable the certificate in Key Vault and upload its public part to the "
            "app registration (Certificates & secrets)"
        )
    return None


def _token_fix(exc: TokenRequestError, settings: Settings | None, tenant: str | None) -> str:
    consent = ""
    if settings is not None and settings.client_id and tenant:
        consent = f" ({admin_consent_url(settings, tenant)})"
    for codes, fix in _TOKEN_FIXES:
        if codes.intersection(exc.codes):
            return fix.format(consent=consent)
    return "see the error above; run with --verbose for the SDK's log"
