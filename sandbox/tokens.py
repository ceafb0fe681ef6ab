"""JSON Web Tokens for the sandbox: RS256 access tokens it issues, and verification of them.

One signing key per sandbox run; its public half is published as JWKS so that every sandbox
service (Key Vault, the directory API) verifies tokens exactly as a real resource would:
signature, audience, issuer and lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class InvalidToken(Exception):
    """A token failed verification; the message says why (safe to return to the caller)."""


class TokenRevoked(InvalidToken):
    """A token that is otherwise valid was issued before a revocation event."""


def split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Return (header, claims, signing_input, signature) without verifying anything."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("token is not a compact JWS (expected three dot-separated parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken(f"token is not valid base64url JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidToken("token header and payload must be JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def verify_rsa_signature(
    public_key: rsa.RSAPublicKey, alg: str, signing_input: bytes, signature: bytes
) -> None:
    """Verify an RS256 or PS256 signature; raise InvalidToken otherwise."""
    try:
        if alg == "RS256":
            public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            public_key.verify(
                signature,
                signing_input,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        else:
            raise InvalidToken(f"unsupported signing algorithm {alg!r}")
    except InvalidSignature:
        raise InvalidToken("signature verification failed") from None


class TokenIssuer:
    """Signs RS256 JWTs and verifies the ones it signed."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        self.kid = b64url(hashlib.sha256(n).digest())[:16]
        self._jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": b64url(n),
            "e": b64url(numbers.e.to_bytes(3, "big")),
        }
        self.revoked_before = 0.0  # tokens issued before this instant are rejected
        self.issued: list[str] = []  # every token issued, for the log-hygiene test
        self._issued_utis: list[str] = []
        self._revoked_utis: set[str] = set()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk)]}

    def issue(self, claims: dict[str, Any], lifetime: float) -> tuple[str, int]:
        """Sign ``claims`` plus iat/nbf/exp/uti; return (token, exp)."""
        now = int(self.clock())
        exp = int(now + lifetime)
        uti = uuid.uuid4().hex
        body = {"iat": now, "nbf": now, "exp": exp, "uti": uti, **claims}
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
        ).encode("ascii")
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input.decode('ascii')}.{b64url(signature)}"
        self.issued.append(token)
        self._issued_utis.append(uti)
        return token, exp

    def revoke_all(self) -> None:
        """Every token issued so far stops being accepted (as after a revocation event).

        Tokens issued in earlier seconds are caught by ``revoked_before``; those issued in the
        current second (``iat`` has one-second resolution) by their ``uti``, so a token issued
        right after the revocation is accepted.
        """
        self._revoked_utis.update(self._issued_utis)
        self.revoked_before = float(int(self.clock()))

    def is_revoked(self, claims: dict[str, Any]) -> bool:
        return (
            float(claims.get("iat", 0)) < self.revoked_before
            or claims.get("uti") in self._revoked_utis
        )

    def verify_signature(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check only that this issuer signed ``token``; return (header, claims)."""
        header, claims, signing_input, signature = split_jwt(token)
        if header.get("kid") != self.kid:
            raise InvalidToken("token was not signed by a key this issuer publishes")
        verify_rsa_signature(
            self._key.public_key(), str(header.get("alg")), signing_input, signature
        )
        return header, claims

    def verify(
        self, token: str, audiences: Iterable[str], issuer_prefix: str | None = None
    ) -> dict[str, Any]:
        """Verify signature, audience, issuer prefix and lifetime; return the claims."""
        header, claims, signing_input, signature = split_jwt(token)
        if header.get("kid") != self.kid:
            raise InvalidToken("token was not signed by a key this issuer publishes")
        verify_rsa_signature(
            self._key.public_key(), str(header.get("alg")), signing_input, signature
        )
        allowed = set(audiences)
        if claims.get("aud") not in allowed:
            raise InvalidToken(f"audience {claims.get('aud')!r} is not one of {sorted(allowed)}")
        if issuer_prefix is not None and not str(claims.get("iss", "")).startswith(issuer_prefix):
            raise InvalidToken("token issuer is not trusted")
        now = self.clock()
        if float(claims.get("exp", 0)) <= now:
            raise InvalidToken("token is expired")
        if float(claims.get("nbf", 0)) > now + 300:
            raise InvalidToken("token is not yet valid")
        if self.is_revoked(claims):
            raise TokenRevoked("token was revoked")
        return claims
