"""Key Vault data plane at the sandbox root (the vault URL is the sandbox URL).

Challenge authentication as the real service does it: a request without a valid bearer gets
``401`` with ``WWW-Authenticate: Bearer authorization="{url}/{tenant}",
resource="https://vault.azure.net"``; a revoked token gets a CAE claims challenge
(``error="insufficient_claims", claims="..."``). Authorization is Azure RBAC per caller
``oid``; refusals carry Key Vault's error shape ``{"error": {"code", "message", "innererror"}}``.
A token issued by another tenant than the vault's gets ``401`` AKV10032 "Invalid issuer"; a
disabled certificate version is returned (``attributes.enabled=false``) but its secret is
refused (``403`` ``SecretDisabled``). Authentication and RBAC are in ``auth.py``, the error
shape in ``errors.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.state import (
    CertificateVersion,
    SandboxState,
    SecretVersion,
)
from sandbox.tokens import b64url, b64url_decode

from .auth import VaultAuthorizer
from .errors import VaultError, disabled, not_found

logger = logging.getLogger("sandbox.keyvault")

_KV = "Microsoft.KeyVault/vaults/"
READ_CERTIFICATE = _KV + "certificates/read"
GET_SECRET = _KV + "secrets/getSecret/action"
READ_KEY = _KV + "keys/read"
SIGN = _KV + "keys/sign/action"
RECOVERY_LEVEL = "Recoverable+Purgeable"
KEY_OPS = ["sign", "verify", "wrapKey", "unwrapKey", "encrypt", "decrypt"]


class KeyVaultService:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.auth = VaultAuthorizer(state)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/certificates/{name}/versions", self.certificate_versions, methods=["GET"]),
            Route("/certificates/{name}/policy", self.certificate_policy, methods=["GET"]),
            Route("/certificates/{name}", self.get_certificate, methods=["GET"]),
            Route("/certificates/{name}/{version}", self.get_certificate, methods=["GET"]),
            Route("/secrets/{name}", self.get_secret, methods=["GET"]),
            Route("/secrets/{name}/{version}", self.get_secret, methods=["GET"]),
            Route("/keys/{name}", self.get_key, methods=["GET"]),
            Route("/keys/{name}/sign", self.sign, methods=["POST"]),
            Route("/keys/{name}/{version}", self.get_key, methods=["GET"]),
            Route("/keys/{name}/{version}/sign", self.sign, methods=["POST"]),
        ]

    # ------------------------------------------------------------------ plumbing

    def _base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    async def _handle(self, request: Request, handler: Any) -> Response:
        try:
            result: Response = await handler(request)
        except VaultError as exc:
            return exc.response()
        return result

    def _attributes(
        self, enabled: bool, nbf: int | None, exp: int | None, created: int, updated: int
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {"enabled": enabled}
        if nbf is not None:
            attributes["nbf"] = nbf
        if exp is not None:
            attributes["exp"] = exp
        attributes.update(
            {
                "created": created,
                "updated": updated,
                "recoverableDays": 90,
                "recoveryLevel": RECOVERY_LEVEL,
            }
        )
        return attributes

    def _cert_attributes(self, version: CertificateVersion) -> dict[str, Any]:
        return self._attributes(
            version.enabled, version.not_before, version.not_after, version.created, version.updated
        )

    def _policy(self, base: str, version: CertificateVersion) -> dict[str, Any]:
        return {
            "id": f"{base}/certificates/{version.name}/policy",
            "key_props": {
                "exportable": version.exportable,
                "kty": "RSA",
                "key_size": 2048,
                "reuse_key": False,
            },
            "secret_props": {"contentType": version.content_type},
            "x509_props": {
                "subject": f"CN={version.name}",
                "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
                "key_usage": ["digitalSignature", "keyEncipherment"],
                "validity_months": 12,
                "basic_constraints": {"ca": False},
            },
            "lifetime_actions": [
                {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}
            ],
            "issuer": {"name": "Self"},
            "attributes": {"enabled": True, "created": version.created, "updated": version.updated},
        }

    def _certificate_version(self, name: str, version: str | None) -> CertificateVersion:
        if not self.state.certificate_versions(name):
            raise not_found("certificate", "CertificateNotFound", name, None)
        found = self.state.certificate_version(name, version)
        if found is None:
            raise not_found("certificate", "CertificateNotFound", name, version)
        return found

    # ---------------------------------------------------------------- certificates

    async def get_certificate(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            version_id = request.path_params.get("version")
            self.auth.authorize(
                request, "get_certificate", READ_CERTIFICATE, f"certificates/{name}"
            )
            version = self._certificate_version(name, version_id)
            # A disabled version is still returned, with attributes.enabled=false: Key Vault
            # refuses only its secret (403 Forbidden/SecretDisabled, see get_secret).
            base = self._base(request)
            return JSONResponse(
                {
                    "id": f"{base}/certificates/{name}/{version.version}",
                    "kid": f"{base}/keys/{name}/{version.version}",
                    "sid": f"{base}/secrets/{name}/{version.version}",
                    "x5t": version.x5t,
                    "cer": base64.b64encode(version.cer).decode("ascii"),
                    "attributes": self._cert_attributes(version),
                    "policy": self._policy(base, version),
                    "tags": {},
                }
            )

        return await self._handle(request, handler)

    async def certificate_policy(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            self.auth.authorize(
                request, "get_certificate_policy", READ_CERTIFICATE, f"certificates/{name}"
            )
            version = self._certificate_version(name, None)
            return JSONResponse(self._policy(self._base(request), version))

        return await self._handle(request, handler)

    async def certificate_versions(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            self.auth.authorize(
                request, "list_certificate_versions", READ_CERTIFICATE, f"certificates/{name}"
            )
            versions = self.state.certificate_versions(name)
            if not versions:
                raise not_found("certificate", "CertificateNotFound", name, None)
            base = self._base(request)
            return JSONResponse(
                {
                    "value": [
                        {
                            "id": f"{base}/certificates/{name}/{v.version}",
                            "x5t": v.x5t,
                            "attributes": self._cert_attributes(v),
                            "tags": {},
                        }
                        for v in versions
                    ],
                    "nextLink": None,
                }
            )

        return await self._handle(request, handler)

    # --------------------------------------------------------------------- secrets

    async def get_secret(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            version_id = request.path_params.get("version")
            self.auth.authorize(request, "get_secret", GET_SECRET, f"secrets/{name}")
            base = self._base(request)
            if self.state.vault_secrets.get(name):
                plain = self.state.vault_secret_version(name, version_id)
                if plain is None:
                    raise not_found("secret", "SecretNotFound", name, version_id)
                return JSONResponse(self._plain_secret(base, plain))
            if not self.state.certificate_versions(name):
                raise not_found("secret", "SecretNotFound", name, None)
            version = self.state.certificate_version(name, version_id)
            if version is None:
                raise not_found("secret", "SecretNotFound", name, version_id)
            if not version.enabled:
                raise disabled("get", "secret", "SecretDisabled")
            return JSONResponse(
                {
                    "value": version.secret_value,
                    "contentType": version.secret_content_type,
                    "id": f"{base}/secrets/{name}/{version.version}",
                    "kid": f"{base}/keys/{name}/{version.version}",
                    "managed": True,
                    "attributes": self._cert_attributes(version),
                    "tags": {},
                }
            )

        return await self._handle(request, handler)

    def _plain_secret(self, base: str, secret: SecretVersion) -> dict[str, Any]:
        if not secret.enabled:
            raise disabled("get", "secret", "SecretDisabled")
        body: dict[str, Any] = {
            "value": secret.value,
            "id": f"{base}/secrets/{secret.name}/{secret.version}",
            "attributes": self._attributes(
                secret.enabled, None, None, secret.created, secret.updated
            ),
            "tags": {},
        }
        if secret.content_type:
            body["contentType"] = secret.content_type
        return body

    # ------------------------------------------------------------------------ keys

    def _key_version(self, name: str, version_id: str | None, operation: str) -> CertificateVersion:
        if not self.state.certificate_versions(name):
            raise not_found("key", "KeyNotFound", name, None)
        version = self.state.certificate_version(name, version_id)
        if version is None:
            raise not_found("key", "KeyNotFound", name, version_id)
        if not version.enabled:
            raise disabled(operation, "key", "KeyDisabled")
        return version

    async def get_key(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            version_id = request.path_params.get("version")
            self.auth.authorize(request, "get_key", READ_KEY, f"keys/{name}")
            version = self._key_version(name, version_id, "get")
            numbers = version.private_key.public_key().public_numbers()
            n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
            e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
            attributes = self._cert_attributes(version)
            attributes["exportable"] = version.exportable
            return JSONResponse(
                {
                    "key": {
                        "kid": f"{self._base(request)}/keys/{name}/{version.version}",
                        "kty": "RSA",
                        "key_ops": KEY_OPS,
                        "n": b64url(n),
                        "e": b64url(e),
                    },
                    "attributes": attributes,
                    "managed": True,
                    "tags": {},
                }
            )

        return await self._handle(request, handler)

    async def sign(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            version_id = request.path_params.get("version")
            self.auth.authorize(request, "sign", SIGN, f"keys/{name}")
            version = self._key_version(name, version_id, "sign")
            try:
                payload = json.loads(await request.body())
                alg = str(payload["alg"])
                digest = b64url_decode(str(payload["value"]))
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise VaultError(
                    400, "BadParameter", "The request body must be JSON with 'alg' and 'value'."
                ) from None
            signature = _sign(version.private_key, alg, digest)
            logger.info("key vault: signed a digest with %s/%s (%s)", name, version.version, alg)
            return JSONResponse(
                {
                    "kid": f"{self._base(request)}/keys/{name}/{version.version}",
                    "value": b64url(signature),
                }
            )

        return await self._handle(request, handler)


def _sign(key: rsa.RSAPrivateKey, alg: str, digest: bytes) -> bytes:
    """Sign a SHA-256 digest (prehashed) as Key Vault does for RS256 and PS256."""
    if alg not in ("RS256", "PS256"):
        raise VaultError(400, "BadParameter", f"Unsupported algorithm for this key: {alg}.")
    if len(digest) != 32:
        raise VaultError(
            400,
            "BadParameter",
            f"Invalid digest length {len(digest)} for {alg}; expected 32 bytes.",
        )
    prehashed = utils.Prehashed(hashes.SHA256())
    if alg == "RS256":
        return key.sign(digest, padding.PKCS1v15(), prehashed)
    return key.sign(
        digest, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), prehashed
    )
