"""The client assertion builder (pure): header, claims and a PS256 signature that verifies."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.auth.assertion import LocalKeySigner, build_client_assertion, token_endpoint


def _decode(part: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


@pytest.fixture(scope="module")
def key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("daemon.example", key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return key, cert.public_bytes(serialization.Encoding.DER)


def test_assertion_header_claims_and_signature(
    key_and_cert: tuple[rsa.RSAPrivateKey, bytes],
) -> None:
    key, der = key_and_cert
    aud = token_endpoint("https://login.microsoftonline.com/", "contoso.com")
    assert aud == "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    token = build_client_assertion(
        LocalKeySigner(key),
        audience=aud,
        client_id="app-id",
        certificate_der=der,
        clock=lambda: 1000.0,
    )
    head, body, sig = token.split(".")
    header = _decode(head)
    claims = _decode(body)
    assert header["alg"] == "PS256"
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert header["x5t#S256"] == expected
    assert "x5c" not in header
    assert claims["aud"] == aud
    assert claims["iss"] == claims["sub"] == "app-id"
    assert claims["iat"] == claims["nbf"] == 1000
    assert claims["exp"] == 1600
    assert claims["jti"]
    key.public_key().verify(
        base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)),
        f"{head}.{body}".encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_x5c_and_unique_jti(key_and_cert: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, der = key_and_cert
    signer = LocalKeySigner(key)
    a = build_client_assertion(
        signer, audience="a", client_id="c", certificate_der=der, send_x5c=True
    )
    b = build_client_assertion(signer, audience="a", client_id="c", certificate_der=der)
    assert _decode(a.split(".")[0])["x5c"] == [base64.b64encode(der).decode()]
    assert _decode(a.split(".")[1])["jti"] != _decode(b.split(".")[1])["jti"]
    assert "private" not in repr(signer).replace("<private key hidden>", "")


def test_lifetime_is_capped(key_and_cert: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, der = key_and_cert
    with pytest.raises(ValueError, match="10 minutes"):
        build_client_assertion(
            LocalKeySigner(key), audience="a", client_id="c", certificate_der=der, lifetime=3600
        )
