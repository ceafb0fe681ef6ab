"""Key Vault data plane at the sandbox root (the vault URL is the sandbox URL).

Challenge authentication as the real service does it: a request without a valid bearer gets
``401`` with ``WWW-Authenticate: Bearer authorization="{url}/{tenant}",
resource="https://vault.azure.net"``; a revoked token gets a CAE claims challenge
(``error="insufficient_claims", claims="..."``). Authorization is Azure RBAC per caller
``oid``; refusals carry Key Vault's error shape ``{"error": {"code", "message", "innererror"}}``.
A token issued by another tenant than the vault's gets ``401`` AKV10032 "Invalid issuer"; a
disabled certificate version is returned (``attributes.enabled=false``) but its secret is
refused (``403`` ``SecretDisabled``).
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
    KEY_VAULT_RESOURCE,
    CertificateVersion,
    SandboxState,
    SecretVersion,
)
from sandbox.tokens import InvalidToken, TokenRevoked, b64url, b64url_decode

logger = logging.getLogger(__name__)

_KV = "Microsoft.KeyVault/vaults/"
READ_CERTIFICATE = _KV + "certificates/read"
GET_SECRET = _KV + "secrets/getSecret/action"
READ_KEY = _KV + "keys/read"
SIGN = _KV + "keys/sign/action"
RECOVERY_LEVEL = "Recoverable+Purgeable"
NOT_FOUND_HELP = (
    " If you recently deleted this {kind} you may be able to recover it using the correct "
    "recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)
KEY_OPS = ["sign", "verify", "wrapKey", "unwrapKey", "encrypt", "decrypt"]


class VaultError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def response(self) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return JSONResponse({"error": error}, self.status, headers=self.headers)


def _not_found(kind: str, code: str, name: str, version: str | None) -> VaultError:
    ident = f"{name}/{version}" if version else name
    article = "An" if kind[0] in "aeiou" else "A"
    return VaultError(
        404,
        code,
        f"{article} {kind} with (name/id) {ident} was not found in this key vault."
        + NOT_FOUND_HELP.format(kind=kind),
    )


def _disabled(operation: str, kind: str, inner: str) -> VaultError:
    return VaultError(
        403, "Forbidden", f"Operation {operation} is not allowed on a disabled {kind}.", inner
    )


class KeyVaultService:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

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

    def _authorize(self, request: Request, operation: str, action: str, resource: str) -> None:
        """Count, check api-version, authenticate (challenge) and authorize (RBAC)."""
        state = self.state
        state.count("kv.requests", f"kv.requests.{operation}")
        if not request.query_params.get("api-version"):
            raise VaultError(400, "BadParameter", "The 'api-version' query parameter is missing.")
        tenant = state.vault_tenant_id or "common"
        challenge = f'Bearer authorization="{state.url}/{tenant}", resource="{KEY_VAULT_RESOURCE}"'
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            state.count("kv.challenges")
            raise VaultError(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                headers={"WWW-Authenticate": challenge},
            )
        token = token.strip()
        state.remember_secret(token)
        audiences = {KEY_VAULT_RESOURCE, KEY_VAULT_RESOURCE + "/"}
        for base in state.base_urls():
            audiences.update({base, base + "/"})
        try:
            claims = state.issuer.verify(token, audiences, issuer_prefix=state.url + "/")
        except TokenRevoked:
            state.count("kv.challenges")
            claims_challenge = json.dumps(
                {
                    "access_token": {
                        "nbf": {"essential": True, "value": str(int(state.issuer.revoked_before))}
                    }
                }
            )
            encoded = base64.b64encode(claims_challenge.encode()).decode("ascii")
            raise VaultError(
                401,
                "Unauthorized",
                "AKV10050: The token has been revoked.",
                headers={
                    "WWW-Authenticate": (
                        f'Bearer authorization="{state.url}/{tenant}", '
                        f'resource="{KEY_VAULT_RESOURCE}", error="insufficient_claims", '
                        f'claims="{encoded}"'
                    )
                },
            ) from None
        except InvalidToken as exc:
            state.count("kv.challenges")
            raise VaultError(
                401,
                "Unauthorized",
                f"AKV10022: Token validation failed: {exc}.",
                headers={"WWW-Authenticate": challenge},
            ) from None
        if state.vault_tenant_id is not None and claims.get("tid") != state.vault_tenant_id:
            # A token from another tenant: Key Vault answers 401 AKV10032 "Invalid issuer"
            # with its challenge (the vault trusts only its own tenant's issuer).
            state.count("kv.challenges", "kv.invalid_issuer")
            expected = state.token_issuer_url(state.vault_tenant_id)
            raise VaultError(
                401,
                "Unauthorized",
                f"AKV10032: Invalid issuer. Expected one of {expected}, found "
                f"{claims.get('iss', '')}.",
                headers={"WWW-Authenticate": challenge},
            )
        oid = str(claims.get("oid", ""))
        if not state.vault_allows(oid, action):
            state.count("kv.forbidden")
            logger.info("key vault: %s denied to oid=%s (%s)", operation, oid, action)
            raise VaultError(
                403,
                "Forbidden",
                "Caller is not authorized to perform action on resource.\r\n"
                "If role assignments, deny assignments or role definitions were changed "
                "recently, please observe propagation time.\r\n"
                f"Caller: appid={claims.get('appid', '')};oid={oid};iss={claims.get('iss', '')}"
                "\r\n"
                f"Action: '{action}'\r\n"
                "Resource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/"
                f"sandbox/providers/microsoft.keyvault/vaults/sandbox/{resource}'\r\n"
                "Assignment: (not found)\r\n"
                "DenyAssignmentId: null\r\n"
                "DecisionReason: null \r\n"
                "Vault: sandbox;location=local\r\n",
                "ForbiddenByRbac",
            )

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
            raise _not_found("certificate", "CertificateNotFound", name, None)
        found = self.state.certificate_version(name, version)
        if found is None:
            raise _not_found("certificate", "CertificateNotFound", name, version)
        return found

    # ---------------------------------------------------------------- certificates

    async def get_certificate(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            version_id = request.path_params.get("version")
            self._authorize(request, "get_certificate", READ_CERTIFICATE, f"certificates/{name}")
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
            self._authorize(
                request, "get_certificate_policy", READ_CERTIFICATE, f"certificates/{name}"
            )
            version = self._certificate_version(name, None)
            return JSONResponse(self._policy(self._base(request), version))

        return await self._handle(request, handler)

    async def certificate_versions(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            self._authorize(
                request, "list_certificate_versions", READ_CERTIFICATE, f"certificates/{name}"
            )
            versions = self.state.certificate_versions(name)
            if not versions:
                raise _not_found("certificate", "CertificateNotFound", name, None)
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
            self._authorize(request, "get_secret", GET_SECRET, f"secrets/{name}")
            base = self._base(request)
            if self.state.vault_secrets.get(name):
                plain = self.state.vault_secret_version(name, version_id)
                if plain is None:
                    raise _not_found("secret", "SecretNotFound", name, version_id)
                return JSONResponse(self._plain_secret(base, plain))
            if not self.state.certificate_versions(name):
                raise _not_found("secret", "SecretNotFound", name, None)
            version = self.state.certificate_version(name, version_id)
            if version is None:
                raise _not_found("secret", "SecretNotFound", name, version_id)
            if not version.enabled:
                raise _disabled("get", "secret", "SecretDisabled")
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
            raise _disabled("get", "secret", "SecretDisabled")
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
            raise _not_found("key", "KeyNotFound", name, None)
        version = self.state.certificate_version(name, version_id)
        if version is None:
            raise _not_found("key", "KeyNotFound", name, version_id)
        if not version.enabled:
            raise _disabled(operation, "key", "KeyDisabled")
        return version

    async def get_key(self, request: Request) -> Response:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            version_id = request.path_params.get("version")
            self._authorize(request, "get_key", READ_KEY, f"keys/{name}")
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
            self._authorize(request, "sign", SIGN, f"keys/{name}")
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
