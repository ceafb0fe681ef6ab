"""How the daemon gets app-only tokens: credentials per auth mode, Key Vault, the token cache.

- ``assertion``: the client assertion (signed JWT) a certificate mode presents;
- ``keyvault``: the app's certificate in Key Vault, exported or signing in place;
- ``credentials``: one token request per auth mode (``create_app_credential``);
- ``token_cache``: refresh-ahead, single-flight cache in front of a credential;
- ``codes``: the Entra ID and Key Vault error codes the daemon acts on.

The submodules import azure-identity, the Key Vault SDKs and cryptography, so the names below
are imported on first use (PEP 562): ``import shared.auth`` stays cheap on the cold path.
"""

from __future__ import annotations

from shared.lazy import lazy_attributes

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing on the cold path
if TYPE_CHECKING:
    from shared.auth.assertion import (
        LocalKeySigner,
        Signer,
        build_client_assertion,
        token_endpoint,
        x5t_s256,
    )
    from shared.auth.codes import NO_RELOAD_CODES, ROTATION_CODES, aadsts_codes
    from shared.auth.credentials import (
        AppCredential,
        create_app_credential,
        default_key_vault_credential,
    )
    from shared.auth.keyvault import CertificateInfo, KeyVaultCertificateSource, SigningCertificate
    from shared.auth.token_cache import CacheStats, TokenCache

_WHERE = {
    "LocalKeySigner": "assertion",
    "Signer": "assertion",
    "build_client_assertion": "assertion",
    "token_endpoint": "assertion",
    "x5t_s256": "assertion",
    "NO_RELOAD_CODES": "codes",
    "ROTATION_CODES": "codes",
    "aadsts_codes": "codes",
    "AppCredential": "credentials",
    "create_app_credential": "credentials",
    "default_key_vault_credential": "credentials",
    "CertificateInfo": "keyvault",
    "KeyVaultCertificateSource": "keyvault",
    "SigningCertificate": "keyvault",
    "CacheStats": "token_cache",
    "TokenCache": "token_cache",
}


__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "NO_RELOAD_CODES",
    "ROTATION_CODES",
    "AppCredential",
    "CacheStats",
    "CertificateInfo",
    "KeyVaultCertificateSource",
    "LocalKeySigner",
    "Signer",
    "SigningCertificate",
    "TokenCache",
    "aadsts_codes",
    "build_client_assertion",
    "create_app_credential",
    "default_key_vault_credential",
    "token_endpoint",
    "x5t_s256",
]
