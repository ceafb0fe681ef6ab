"""Client assertions: the signed JWT a confidential client presents instead of a secret.

One builder serves every certificate mode: the signature comes from a ``Signer`` — a private
key held in memory (exported from Key Vault) or Key Vault's own ``sign`` operation (the key
never leaves the vault). Header ``alg=PS256`` with ``x5t#S256`` (and optionally ``x5c``);
claims ``aud`` (the token endpoint), ``iss`` = ``sub`` = client id, ``jti``, ``iat``, ``nbf``,
``exp`` (at most 10 minutes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

__all__ = [
    "ASSERTION_LIFETIME_SECONDS",
    "LocalKeySigner",
    "Signer",
    "b64url",
    "build_client_assertion",
    "token_endpoint",
    "x5t_s256",
]

ASSERTION_LIFETIME_SECONDS = 600


class Signer(Protocol):
    """Signs a SHA-256 digest with RSASSA-PSS (PS256) and returns the raw signature."""

    def sign_digest(self, digest: bytes) -> bytes: ...


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def x5t_s256(certificate_der: bytes) -> str:
    """The certificate's SHA-256 thumbprint, base64url: the ``x5t#S256`` header."""
    return b64url(hashlib.sha256(certificate_der).digest())


def token_endpoint(authority_host: str, tenant: str) -> str:
    return f"{authority_host.rstrip('/')}/{tenant}/oauth2/v2.0/token"


class LocalKeySigner:
    """PS256 with an RSA private key held in memory (never written anywhere)."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "LocalKeySigner(<private key hidden>)"

    def sign_digest(self, digest: bytes) -> bytes:
        return self._key.sign(
            digest,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            Prehashed(hashes.SHA256()),
        )


def build_client_assertion(
    signer: Signer,
    *,
    audience: str,
    client_id: str,
    certificate_der: bytes,
    chain_der: Sequence[bytes] = (),
    send_x5c: bool = False,
    clock: Callable[[], float] = time.time,
    lifetime: int = ASSERTION_LIFETIME_SECONDS,
) -> str:
    """Build and sign a client assertion for ``audience`` (the token endpoint URL)."""
    if not 0 < lifetime <= ASSERTION_LIFETIME_SECONDS:
        raise ValueError("a client assertion may live at most 10 minutes")
    now = int(clock())
    header: dict[str, object] = {
        "alg": "PS256",
        "typ": "JWT",
        "x5t#S256": x5t_s256(certificate_der),
    }
    if send_x5c:
        header["x5c"] = [
            base64.b64encode(der).decode("ascii") for der in (certificate_der, *chain_der)
        ]
    claims = {
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
    }
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    digest = hashlib.sha256(signing_input.encode("ascii")).digest()
    return f"{signing_input}.{b64url(signer.sign_digest(digest))}"
