"""The app's certificate in Azure Key Vault: exported with its key, or used to sign in place.

``CertificateClient.get_certificate`` returns only the public part and the ids of the key
and secret behind it. For the *export* mode the private key comes from
``SecretClient.get_secret`` at exactly the certificate's version (PFX or PEM); for the
*in Key Vault* mode ``CryptographyClient.sign`` signs the assertion digest and the key never
leaves the vault. All calls are synchronous SDK calls: run them off the event loop.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateProperties,
    KeyVaultCertificate,
)
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from shared import telemetry
from shared.auth.assertion import LocalKeySigner, Signer, x5t_s256
from shared.errors import (
    CertificateError,
    KeyVaultAccessDeniedError,
    KeyVaultError,
    KeyVaultNotFoundError,
)
from shared.settings import SigningMode

__all__ = ["CertificateInfo", "KeyVaultCertificateSource", "SigningCertificate"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_PEM_KEY_RE = re.compile(
    rb"-----BEGIN (?:RSA |ENCRYPTED )?PRIVATE KEY-----.+?"
    rb"-----END (?:RSA |ENCRYPTED )?PRIVATE KEY-----",
    re.DOTALL,
)
_ROLE_FOR = {
    "certificate": "Key Vault Certificate User",
    "secret": "Key Vault Certificate User",  # reads the certificate's secret (its key) too
    "key": "Key Vault Crypto User",
}


@dataclass(frozen=True)
class CertificateInfo:
    """What may be shown about a certificate: no key material."""

    name: str
    version: str
    thumbprint_s256: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    signing_mode: SigningMode

    def days_to_expiry(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


class _KeyVaultSigner:
    """PS256 done by Key Vault's ``sign`` operation (key never leaves the vault)."""

    def __init__(self, client: CryptographyClient, describe: str) -> None:
        self._client = client
        self._describe = describe

    def sign_digest(self, digest: bytes) -> bytes:
        result = _kv_call(
            f"signing with key {self._describe}",
            "key",
            lambda: self._client.sign(SignatureAlgorithm.ps256, digest),
        )
        return bytes(result.signature)


@dataclass(frozen=True)
class SigningCertificate:
    """A loaded certificate ready to sign assertions."""

    info: CertificateInfo
    certificate_der: bytes = field(repr=False)
    signer: Signer = field(repr=False)


def _kv_call(what: str, kind: str, call: Callable[[], T]) -> T:
    """Run one Key Vault call, turning SDK errors into the daemon's error types.

    Chained ``from exc``: Key Vault's error keeps its status and request id, and carries no
    secret (a failed call returns no value).
    """
    try:
        with telemetry.span("daemon.keyvault", operation=what, kind=kind):
            return call()
    except ResourceNotFoundError as exc:
        raise KeyVaultNotFoundError(f"Key Vault: {what}: not found ({_code(exc)})") from exc
    except ClientAuthenticationError as exc:
        raise KeyVaultError(
            f"Key Vault: {what}: could not get a token for Key Vault with the managed identity "
            f"or developer credential: {_first_line(exc)}"
        ) from exc
    except HttpResponseError as exc:
        code = _code(exc)
        if exc.status_code == 403 and "disabled" in (code + str(exc.message)).lower():
            raise CertificateError(f"Key Vault: {what}: the {kind} version is disabled") from exc
        if exc.status_code == 403:
            raise KeyVaultAccessDeniedError(
                f"Key Vault: {what}: access denied ({code}); grant the daemon's identity the "
                f"'{_ROLE_FOR[kind]}' role on the vault"
            ) from exc
        raise KeyVaultError(
            f"Key Vault: {what}: HTTP {exc.status_code} {code}: {_first_line(exc)}"
        ) from exc
    except ServiceRequestError as exc:
        raise KeyVaultError(f"Key Vault: {what}: could not reach the vault: {exc}") from exc


def _props(certificate: KeyVaultCertificate) -> CertificateProperties:
    if certificate.properties is None:
        raise CertificateError(
            f"Key Vault returned certificate {certificate.name!r} without properties"
        )
    return certificate.properties


def _code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    parts = [getattr(error, "code", None) or ""]
    inner = getattr(error, "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        parts.append(str(inner["code"]))
    return "/".join(p for p in parts if p) or f"HTTP {exc.status_code}"


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc).strip().splitlines()[0][:300]


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyVaultCertificateSource:
    """Loads the app's certificate from Key Vault and notices newer versions.

    Thread-safe: token requests for several tenants may run in parallel worker threads.
    """

    def __init__(
        self,
        vault_url: str,
        certificate_name: str,
        credential: TokenCredential,
        *,
        signing_mode: SigningMode,
        verify_challenge_resource: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vault_url = vault_url
        self.certificate_name = certificate_name
        self.signing_mode = signing_mode
        self._credential = credential
        self._clock = clock
        self._options: dict[str, Any] = {"verify_challenge_resource": verify_challenge_resource}
        self._lock = threading.Lock()
        self._certificates: CertificateClient | None = None
        self._secrets: SecretClient | None = None

    def __repr__(self) -> str:
        return (
            f"KeyVaultCertificateSource({self.vault_url!r}, {self.certificate_name!r}, "
            f"{self.signing_mode.value})"
        )

    @property
    def _describe(self) -> str:
        return f"certificate '{self.certificate_name}' in {self.vault_url}"

    def _certificate_client(self) -> CertificateClient:
        if self._certificates is None:
            self._certificates = CertificateClient(
                self.vault_url, self._credential, **self._options
            )
        return self._certificates

    def _secret_client(self) -> SecretClient:
        if self._secrets is None:
            self._secrets = SecretClient(self.vault_url, self._credential, **self._options)
        return self._secrets

    def latest_version(self) -> str:
        """The version id of the certificate's current (newest) version."""
        return str(_props(self._get_certificate()).version)

    def _get_certificate(self) -> KeyVaultCertificate:
        client = self._certificate_client()
        return _kv_call(
            f"reading {self._describe}",
            "certificate",
            lambda: client.get_certificate(self.certificate_name),
        )

    def load(self) -> SigningCertificate:
        """Load the newest version and check it can be used now."""
        with self._lock:
            certificate = self._get_certificate()
            if not certificate.cer:
                raise CertificateError(f"{self._describe} has no issued X.509 certificate yet")
            der = bytes(certificate.cer)
            info = self._check(certificate, der)
            if self.signing_mode is SigningMode.EXPORT:
                signer: Signer = self._exported_signer(certificate, der)
            else:
                signer = self._vault_signer(certificate)
            logger.info(
                "Loaded certificate %s version %s (x5t#S256 %s, expires %s, signing: %s)",
                info.name,
                info.version,
                info.thumbprint_s256,
                _utc(info.not_after),
                info.signing_mode.value,
            )
            return SigningCertificate(info=info, certificate_der=der, signer=signer)

    def _check(self, certificate: KeyVaultCertificate, der: bytes) -> CertificateInfo:
        version = str(_props(certificate).version)
        try:
            x509_cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:  # the public certificate: nothing secret in the error
            raise CertificateError(
                f"{self._describe} version {version}: the certificate is not valid DER X.509"
            ) from exc
        not_before = x509_cert.not_valid_before_utc
        not_after = x509_cert.not_valid_after_utc
        properties = _props(certificate)
        if properties.not_before is not None:
            not_before = max(not_before, properties.not_before)
        if properties.expires_on is not None:
            not_after = min(not_after, properties.expires_on)
        dates = f"valid {_utc(not_before)} to {_utc(not_after)}"
        if properties.enabled is False:
            raise CertificateError(f"{self._describe} version {version} is disabled ({dates})")
        now = dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc)
        if now >= not_after:
            raise CertificateError(
                f"{self._describe} version {version} has expired ({dates}); renew it in Key Vault"
            )
        if now < not_before:
            raise CertificateError(f"{self._describe} version {version} is not yet valid ({dates})")
        return CertificateInfo(
            name=self.certificate_name,
            version=version,
            thumbprint_s256=x5t_s256(der),
            subject=x509_cert.subject.rfc4514_string(),
            not_before=not_before,
            not_after=not_after,
            signing_mode=self.signing_mode,
        )

    def _exported_signer(self, certificate: KeyVaultCertificate, der: bytes) -> Signer:
        if not certificate.secret_id:
            raise CertificateError(f"{self._describe} has no secret id")
        secret_ref = KeyVaultSecretIdentifier(certificate.secret_id)
        version = str(_props(certificate).version)
        client = self._secret_client()
        secret = _kv_call(
            f"reading the private key of {self._describe} (secret version {secret_ref.version})",
            "secret",
            lambda: client.get_secret(secret_ref.name, secret_ref.version),
        )
        where = f"{self._describe} version {version}"
        key = _parse_private_key(secret.value or "", secret.properties.content_type, where)
        if key is None:
            raise CertificateError(
                f"{where}: Key Vault returned no private key — the key is not exportable; "
                "use DAEMON_AUTH_MODE=keyvault-signing to sign in Key Vault instead"
            )
        public = x509.load_der_x509_certificate(der).public_key()
        if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != (
            key.public_key().public_numbers()
        ):
            raise CertificateError(f"{where}: the private key does not match the certificate")
        return LocalKeySigner(key)

    def _vault_signer(self, certificate: KeyVaultCertificate) -> Signer:
        if not certificate.key_id:
            raise CertificateError(f"{self._describe} has no key id")
        client = CryptographyClient(certificate.key_id, self._credential, **self._options)
        return _KeyVaultSigner(client, f"of {self._describe}")


def _parse_private_key(
    value: str, content_type: str | None, where: str
) -> rsa.RSAPrivateKey | None:
    """The RSA private key in a PFX (base64) or PEM secret, or None if it holds none."""
    content_type = (content_type or "").lower()
    if content_type == "application/x-pkcs12":
        try:
            data = base64.b64decode(value, validate=True)
            key, _, _ = pkcs12.load_key_and_certificates(data, None)
        except ValueError:
            raise CertificateError(
                f"{where}: the secret is not a readable PFX (application/x-pkcs12, base64, "
                "no password)"
            ) from None  # not chained: raised parsing the private key, it may carry key bytes
    elif content_type == "application/x-pem-file":
        match = _PEM_KEY_RE.search(value.encode("utf-8", "replace"))
        if match is None:
            return None
        try:
            key = serialization.load_pem_private_key(match.group(0), None)
        except (ValueError, TypeError):
            raise CertificateError(
                f"{where}: the PEM private key cannot be read (it must be unencrypted)"
            ) from None  # not chained: raised parsing the private key, it may carry key bytes
    else:
        raise CertificateError(
            f"{where}: unsupported secret content type {content_type or '(none)'!r}; "
            "expected application/x-pkcs12 or application/x-pem-file"
        )
    if key is None:
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(f"{where}: the private key is not RSA (Entra ID needs RSA)")
    return key
