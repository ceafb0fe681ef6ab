"""Who may call the vault: challenge authentication as the real service does it, then Azure
RBAC per caller ``oid``.

A request without a valid bearer gets ``401`` with ``WWW-Authenticate: Bearer
authorization="{url}/{tenant}", resource="https://vault.azure.net"``; a revoked token gets a
CAE claims challenge (``error="insufficient_claims", claims="..."``); a token issued by another
tenant than the vault's gets ``401`` AKV10032 "Invalid issuer"; a caller without a role whose
data actions include the operation's gets ``403`` ``ForbiddenByRbac``.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from starlette.requests import Request

from sandbox.state import KEY_VAULT_RESOURCE, SandboxState
from sandbox.tokens import InvalidToken, TokenRevoked

from .errors import VaultError

logger = logging.getLogger("sandbox.keyvault")


class VaultAuthorizer:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def authorize(self, request: Request, operation: str, action: str, resource: str) -> None:
        """Count, check api-version, authenticate (challenge) and authorize (RBAC)."""
        state = self.state
        state.count("kv.requests", f"kv.requests.{operation}")
        if not request.query_params.get("api-version"):
            raise VaultError(400, "BadParameter", "The 'api-version' query parameter is missing.")
        tenant = state.vault_tenant_id or "common"
        challenge = f'Bearer authorization="{state.url}/{tenant}", resource="{KEY_VAULT_RESOURCE}"'
        token = self._bearer(request, challenge)
        claims = self._verified_claims(token, tenant, challenge)
        self._check_issuer(claims, challenge)
        self._check_role(claims, operation, action, resource)

    def _bearer(self, request: Request, challenge: str) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.state.count("kv.challenges")
            raise VaultError(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                headers={"WWW-Authenticate": challenge},
            )
        token = token.strip()
        self.state.remember_secret(token)
        return token

    def _verified_claims(self, token: str, tenant: str, challenge: str) -> dict[str, Any]:
        """The token's claims: signed by the sandbox's Entra, for the vault, not revoked."""
        state = self.state
        audiences = {KEY_VAULT_RESOURCE, KEY_VAULT_RESOURCE + "/"}
        for base in state.base_urls():
            audiences.update({base, base + "/"})
        try:
            return state.issuer.verify(token, audiences, issuer_prefix=state.url + "/")
        except TokenRevoked:
            state.count("kv.challenges")
            raise self._revoked(tenant) from None
        except InvalidToken as exc:
            state.count("kv.challenges")
            raise VaultError(
                401,
                "Unauthorized",
                f"AKV10022: Token validation failed: {exc}.",
                headers={"WWW-Authenticate": challenge},
            ) from None

    def _revoked(self, tenant: str) -> VaultError:
        """A CAE claims challenge: the client must get a token issued after the revocation."""
        state = self.state
        claims_challenge = json.dumps(
            {
                "access_token": {
                    "nbf": {"essential": True, "value": str(int(state.issuer.revoked_before))}
                }
            }
        )
        encoded = base64.b64encode(claims_challenge.encode()).decode("ascii")
        return VaultError(
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
        )

    def _check_issuer(self, claims: dict[str, Any], challenge: str) -> None:
        state = self.state
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

    def _check_role(
        self, claims: dict[str, Any], operation: str, action: str, resource: str
    ) -> None:
        oid = str(claims.get("oid", ""))
        if self.state.vault_allows(oid, action):
            return
        self.state.count("kv.forbidden")
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
