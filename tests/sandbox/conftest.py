"""Fixtures for the sandbox's own tests: a running, seeded sandbox and SDK environment."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.seed import Seed, seed_default
from sandbox.server import Sandbox
from sandbox.state import CertificateVersion
from sandbox.tokens import b64url
from tests.conftest import register_secret_source

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _start() -> tuple[Sandbox, Seed]:
    sandbox = Sandbox().start()
    register_secret_source(sandbox.state.secret_values)
    return sandbox, seed_default(sandbox)


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[Sandbox, Seed]]:
    """A shared sandbox: tests using it must not change its state."""
    sandbox, seed = _start()
    try:
        yield sandbox, seed
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def sandbox(seeded: tuple[Sandbox, Seed]) -> Sandbox:
    return seeded[0]


@pytest.fixture(scope="module")
def seed(seeded: tuple[Sandbox, Seed]) -> Seed:
    return seeded[1]


@pytest.fixture
def fresh() -> Iterator[tuple[Sandbox, Seed]]:
    """A sandbox of its own, for tests that change state."""
    sandbox, seed = _start()
    try:
        yield sandbox, seed
    finally:
        sandbox.stop()


def sdk_environment(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> None:
    """What App Service and the CA bundle give the SDKs, for this test only."""
    for name in (
        "IDENTITY_SERVER_THUMBPRINT",
        "IMDS_ENDPOINT",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_AUTHORITY_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sandbox.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", sandbox.identity_header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_path)
    monkeypatch.setenv("SSL_CERT_FILE", sandbox.ca_path)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> Sandbox:
    sdk_environment(monkeypatch, sandbox)
    return sandbox


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch, fresh: tuple[Sandbox, Seed]) -> tuple[Sandbox, Seed]:
    sdk_environment(monkeypatch, fresh[0])
    return fresh


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(verify=sandbox.client_ssl_context(), timeout=10) as client:
        yield client


def token_endpoint(sandbox: Sandbox, tenant: str) -> str:
    return f"{sandbox.url}/{tenant}/oauth2/v2.0/token"


def build_assertion(
    key: rsa.RSAPrivateKey,
    certificate: CertificateVersion,
    *,
    client_id: str,
    audience: str,
    alg: str = "PS256",
    header_overrides: dict[str, Any] | None = None,
    **claim_overrides: Any,
) -> str:
    """A client assertion built and signed locally (PS256 with x5t#S256, like async MSAL)."""
    now = int(time.time())
    header: dict[str, Any] = {"alg": alg, "typ": "JWT", "x5t#S256": certificate.x5t_s256}
    header.update(header_overrides or {})
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(claim_overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    signing_input = (
        f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    ).encode()
    if alg == "PS256":
        signature = key.sign(
            signing_input,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
    else:
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64url(signature)}"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
