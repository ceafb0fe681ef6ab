"""The key vault: certificate versions (each with its key and secret), plain secrets, and the
data-plane role assignments (Azure RBAC) of principals."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from .directory import DirectoryState
from .identities import IdentityState
from .ledger import Ledger
from .models import (
    PEM_CONTENT_TYPE,
    PFX_CONTENT_TYPE,
    VAULT_ROLE_ACTIONS,
    CertificateVersion,
    SecretVersion,
    thumbprints,
)

logger = logging.getLogger("sandbox.state")

V = TypeVar("V", CertificateVersion, SecretVersion)


class VaultState:
    def __init__(
        self,
        lock: threading.RLock,
        clock: Callable[[], float],
        ledger: Ledger,
        directory: DirectoryState,
        identities: IdentityState,
    ) -> None:
        self._lock = lock
        self.clock = clock
        self.ledger = ledger
        self.directory = directory
        self.identities = identities
        self.tenant_id: str | None = None  # the tenant whose tokens the vault accepts
        self.certificates: dict[str, list[CertificateVersion]] = {}
        self.vault_secrets: dict[str, list[SecretVersion]] = {}
        self.vault_roles: dict[str, set[str]] = {}

    # ---------------------------------------------------------------- certificates

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
        certificate = _self_signed(name, private_key, nbf, exp)
        secret_value = _secret_value(name, private_key, certificate, exportable, content_type)
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
        with self._lock:
            self.ledger.remember_secret(_pkcs8_pem(private_key))
            if exportable:
                self.ledger.remember_secret(secret_value)
            self.certificates.setdefault(name, []).append(version)
            if register_with_app is not None:
                self.directory.register_app_certificate(register_with_app, certificate)
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
            return _pick(self.certificates.get(name), version)

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
            apps = [app.client_id for app in self.directory.apps.values() if latest.x5t in app.keys]
        new = self.add_certificate_version(
            name, exportable=latest.exportable, content_type=latest.content_type
        )
        if register:
            for client_id in apps:
                self.directory.register_app_certificate(client_id, new.certificate)
        return new

    # --------------------------------------------------------------------- secrets

    def set_vault_secret(
        self, name: str, value: str, *, content_type: str | None = None, enabled: bool = True
    ) -> SecretVersion:
        now = int(self.clock())
        version = SecretVersion(name, uuid.uuid4().hex, value, content_type, enabled, now, now)
        with self._lock:
            if name in self.certificates:
                raise ValueError(f"{name} is a certificate-backed secret")
            self.vault_secrets.setdefault(name, []).append(version)
            self.ledger.remember_secret(value)
        return version

    def vault_secret_version(self, name: str, version: str | None = None) -> SecretVersion | None:
        with self._lock:
            return _pick(self.vault_secrets.get(name), version)

    # ----------------------------------------------------------------------- roles

    def _resolve_object_id(self, principal: str) -> str:
        if principal in self.directory.apps:
            tenant = self.tenant_id or self.directory.apps[principal].home_tenant_id
            return self.directory.ensure_service_principal(tenant, principal).object_id
        mi = self.identities.identity_by_id(principal)
        return mi.object_id if mi is not None else principal

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


def _pick(versions: list[V] | None, version: str | None) -> V | None:
    """The named version (case-insensitive id), or the latest when ``version`` is empty."""
    if not versions:
        return None
    if not version:
        return versions[-1]
    for candidate in versions:
        if candidate.version == version.lower():
            return candidate
    return None


def _self_signed(
    name: str, private_key: rsa.RSAPrivateKey, nbf: float, exp: float
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
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


def _pkcs8_pem(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _secret_value(
    name: str,
    private_key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    exportable: bool,
    content_type: str,
) -> str:
    """The certificate's secret: PFX (base64) or PEM key + certificate; only the public
    certificate (PEM) when the key is not exportable."""
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    if not exportable:
        return cert_pem
    if content_type == PFX_CONTENT_TYPE:
        pfx = pkcs12.serialize_key_and_certificates(
            name.encode(), private_key, certificate, None, serialization.NoEncryption()
        )
        return base64.b64encode(pfx).decode("ascii")
    return _pkcs8_pem(private_key) + cert_pem
