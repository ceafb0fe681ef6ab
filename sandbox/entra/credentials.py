"""How the token endpoint authenticates a client: a client secret, a certificate-signed
client assertion (learn.microsoft.com/entra/identity-platform/certificate-credentials) or a
federated credential's assertion
(learn.microsoft.com/entra/workload-id/workload-identity-federation).

Strict where Entra is strict: the signature against the app's registered certificates,
audience, issuer/subject, lifetime and replay (``jti``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
from typing import Any

from sandbox.state import AppRegistration, SandboxState, Tenant
from sandbox.tokens import InvalidToken, split_jwt, verify_rsa_signature

from .errors import EntraError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300.0  # seconds of tolerated clock skew for nbf/exp
CERT_DOCS = (
    "Review the documentation at "
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
)
FIC_DOCS = (
    "Check your federated identity credential Subject, Audience and Issuer against the "
    "presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
)
SUPPORTED_ALGS = ("RS256", "PS256")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _thumbprint_hex(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex().upper()
    except (binascii.Error, ValueError):
        return value


class ClientAuthenticator:
    """Checks the credential a token request presents for an app."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def check_secret(self, secret: str, app: AppRegistration) -> None:
        now = self.state.clock()
        for candidate in app.secrets:
            if hmac.compare_digest(candidate.value.encode(), secret.encode()):
                if candidate.expires <= now:
                    raise EntraError(
                        401,
                        "invalid_client",
                        7000222,
                        f"The provided client secret keys for app '{app.client_id}' are expired. "
                        "Visit the Azure portal to create new keys for your app: "
                        "https://aka.ms/NewClientSecret, or consider using certificate "
                        "credentials for added security: https://aka.ms/certCreds.",
                    )
                return
        raise EntraError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{app.client_id}'.",
        )

    def check_assertion(
        self, assertion: str, app: AppRegistration, tenant: Tenant, path_tenant: str
    ) -> str:
        try:
            header, claims, signing_input, signature = split_jwt(assertion)
        except InvalidToken as exc:
            raise EntraError(
                401, "invalid_client", 50027, f"JWT token is invalid or malformed. {exc}"
            ) from None
        alg = str(header.get("alg", ""))
        if header.get("x5t#S256") or header.get("x5t"):
            if alg not in SUPPORTED_ALGS:
                raise EntraError(
                    401,
                    "invalid_client",
                    5002738,
                    f"Invalid JWT token. '{alg}' is not a supported signature algorithm. "
                    f"Supported signing algorithms are: '{', '.join(SUPPORTED_ALGS)}'",
                )
            self._check_certificate_assertion(header, claims, signing_input, signature, app)
            self._check_assertion_claims(claims, app, tenant, path_tenant)
            jti = claims.get("jti")
            if not isinstance(jti, str) or not jti:
                raise EntraError(
                    401,
                    "invalid_client",
                    50027,
                    "JWT token is invalid or malformed. The client assertion must contain a "
                    "'jti' claim.",
                )
            if not self.state.remember_jti(app.client_id, jti, float(claims.get("exp", 0))):
                raise EntraError(
                    401,
                    "invalid_client",
                    700027,
                    "Client assertion failed validation. [Reason - The assertion's 'jti' "
                    f"'{jti}' has already been used; client assertions are single-use (replay "
                    "detected).] " + CERT_DOCS,
                )
            return "2"
        if header.get("kid") == self.state.issuer.kid:
            self._check_federated_assertion(assertion, app)
            return "2"
        raise EntraError(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found., "
            "The assertion header has neither 'x5t#S256' nor 'x5t' and its issuer is not a "
            "trusted federated issuer.] " + CERT_DOCS,
        )

    def _check_certificate_assertion(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        signing_input: bytes,
        signature: bytes,
        app: AppRegistration,
    ) -> None:
        thumbprint = str(header.get("x5t#S256") or header.get("x5t"))
        key = None
        for name in ("x5t#S256", "x5t"):
            value = header.get(name)
            # MSAL pads its base64url thumbprints with "="; Entra accepts both forms.
            if isinstance(value, str) and value.rstrip("=") in app.keys:
                key = app.keys[value.rstrip("=")]
                break
        if key is None:
            shown = _thumbprint_hex(thumbprint)
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not "
                "registered on application. [Reason - The key was not found., Thumbprint of key "
                f"used by client: '{shown}', Please visit the Azure Portal, Graph Explorer or "
                f"directly use MS Graph to see configured keys for app Id '{app.client_id}'.]",
            )
        now = self.state.clock()
        if not key.not_before <= now <= key.not_after:
            raise EntraError(
                401,
                "invalid_client",
                7000274,
                "Key was found, but the certificate used to sign the client assertion is not "
                f"within its validity period (valid from {_iso(key.not_before)} to "
                f"{_iso(key.not_after)}). Thumbprint of key used by client: "
                f"'{key.thumbprint_hex}'.",
            )
        try:
            verify_rsa_signature(key.public_key, str(header.get("alg")), signing_input, signature)
        except InvalidToken:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. [Reason - The provided signature "
                "value did not match the expected signature value., Thumbprint of key used by "
                f"client: '{key.thumbprint_hex}', Found key 'Start={_iso(key.not_before)}, "
                f"End={_iso(key.not_after)}']",
            ) from None

    def _check_assertion_claims(
        self, claims: dict[str, Any], app: AppRegistration, tenant: Tenant, path_tenant: str
    ) -> None:
        iss, sub = claims.get("iss"), claims.get("sub")
        if iss != app.client_id:
            raise EntraError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter. "
                + CERT_DOCS,
            )
        if sub != iss:
            raise EntraError(
                401,
                "invalid_client",
                50048,
                "Subject mismatches Issuer claim in the client assertion.",
            )
        aud = claims.get("aud")
        if isinstance(aud, list):
            if len(aud) != 1:
                raise EntraError(
                    401,
                    "invalid_client",
                    5002741,
                    "Number of audience values in the provided client credential exceed maximum "
                    f"allowed. {len(aud)} audience values provided, maximum allowed is 1.",
                )
            aud = aud[0]
        accepted = {
            f"{base}/{name}/oauth2/v2.0/token".lower()
            for base in self.state.base_urls()
            for name in (tenant.tenant_id, tenant.domain, path_tenant)
        }
        if not isinstance(aud, str) or aud.lower() not in accepted:
            raise EntraError(
                401,
                "invalid_client",
                700023,
                "Client assertion audience claim does not match Realm issuer. " + CERT_DOCS,
            )
        self._check_times(claims)

    def _check_times(self, claims: dict[str, Any]) -> None:
        """Refuse an expired or not-yet-valid assertion; any lifetime is accepted.

        "Microsoft Entra ID doesn't place restrictions on the exp time currently"
        (learn.microsoft.com/entra/identity-platform/certificate-credentials, claims table):
        azure-identity's async CertificateCredential signs 30-minute assertions. Replay (jti)
        and audience are checked by the callers."""
        now = self.state.clock()
        try:
            exp = float(claims["exp"])
            nbf = float(claims.get("nbf", claims.get("iat", now)))
        except (KeyError, TypeError, ValueError):
            raise EntraError(
                401,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed. The client assertion must contain a numeric "
                "'exp' claim.",
            ) from None
        valid_range = (
            f"Current time: {_iso(now)}, assertion valid from {_iso(nbf)}, expiry time of "
            f"assertion {_iso(exp)}. "
        )
        if exp <= now - CLOCK_SKEW or nbf > now + CLOCK_SKEW:
            raise EntraError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. " + valid_range + CERT_DOCS,
            )

    def _check_federated_assertion(self, assertion: str, app: AppRegistration) -> None:
        issuer = self.state.issuer
        try:
            _, claims = issuer.verify_signature(assertion)
        except InvalidToken as exc:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation. [Reason - {exc}]",
            ) from None
        self._check_times(claims)
        if issuer.is_revoked(claims):
            raise EntraError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. The presented token was "
                "revoked. " + FIC_DOCS,
            )
        iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
        matching_issuer = [c for c in app.federated_credentials if c.issuer == iss]
        if not matching_issuer:
            raise EntraError(
                401,
                "invalid_client",
                700211,
                f"No matching federated identity record found for presented assertion issuer "
                f"'{iss}'. " + FIC_DOCS,
            )
        matching_subject = [c for c in matching_issuer if c.subject == sub]
        if not matching_subject:
            raise EntraError(
                401,
                "invalid_client",
                700213,
                f"No matching federated identity record found for presented assertion subject "
                f"'{sub}'. " + FIC_DOCS,
            )
        if not any(aud in c.audiences for c in matching_subject):
            raise EntraError(
                401,
                "invalid_client",
                700212,
                f"No matching federated identity record found for presented assertion audience "
                f"'{aud}'. " + FIC_DOCS,
            )
