"""The error codes of Entra ID and Key Vault that the daemon acts on, named once.

The credentials (``shared.auth.credentials``) decide from these whether a reloaded
certificate may help; ``doctor`` turns them into a fix to show. AADSTS codes per the error
code reference, https://learn.microsoft.com/entra/identity-platform/reference-error-codes
(which warns that codes may change: an unknown code only loses the specific advice). No SDK is
imported here, so reading a code costs nothing.
"""

from __future__ import annotations

import re

__all__ = [
    "APPLICATION_NOT_FOUND",
    "APP_NOT_IN_TENANT_CODES",
    "BAD_CLIENT_SECRET_CODES",
    "CERTIFICATE_NOT_ACCEPTED_CODES",
    "FEDERATION_MISMATCH_CODES",
    "INVALID_CLIENT_SECRET",
    "KEY_VAULT_WRONG_TENANT",
    "NO_RELOAD_CODES",
    "ROTATION_CODES",
    "TENANT_NOT_FOUND_CODES",
    "UNKNOWN_AUTHORITY_CODES",
    "UNKNOWN_RESOURCE_CODES",
    "aadsts_codes",
]

APPLICATION_NOT_FOUND = 700016  # no app with this client id in the tenant
INVALID_CLIENT_SECRET = 7000215

# The app is unknown in the tenant, has no service principal there, or lacks consent.
APP_NOT_IN_TENANT_CODES = frozenset({APPLICATION_NOT_FOUND, 7000229, 65001})
# The tenant does not exist.
TENANT_NOT_FOUND_CODES = frozenset({90002})
# The client secret is wrong or expired.
BAD_CLIENT_SECRET_CODES = frozenset({INVALID_CLIENT_SECRET, 7000222})
# The client assertion's certificate is not registered on the app, or its signature or time
# range is refused.
CERTIFICATE_NOT_ACCEPTED_CODES = frozenset({700027, 700024, 7000274, 7000277})
# invalid_client answers after which a reloaded certificate may succeed (the one in use is
# expired, not yet valid or unknown to the app): the above and two more.
ROTATION_CODES = CERTIFICATE_NOT_ACCEPTED_CODES | {7000214, 1000502}
# Never worth a certificate reload: a bad secret, or an app that does not exist.
NO_RELOAD_CODES = frozenset({INVALID_CLIENT_SECRET, APPLICATION_NOT_FOUND})
# No federated credential on the app matches the assertion's issuer, subject or audience.
FEDERATION_MISMATCH_CODES = frozenset({70021, 700211, 700212, 700213})
# The authority (DAEMON_AUTHORITY_HOST) is unknown or invalid.
UNKNOWN_AUTHORITY_CODES = frozenset({50049})
# The resource of the scope (DAEMON_API_SCOPE) is unknown in the tenant.
UNKNOWN_RESOURCE_CODES = frozenset({500011})

# Key Vault refused a token issued by another tenant than the vault's ("Invalid issuer").
KEY_VAULT_WRONG_TENANT = "AKV10032"

_AADSTS_RE = re.compile(r"AADSTS(\d+)")


def aadsts_codes(text: str) -> tuple[int, ...]:
    """The AADSTS codes in an error message, in order, without repeats."""
    return tuple(int(code) for code in dict.fromkeys(_AADSTS_RE.findall(text)))
