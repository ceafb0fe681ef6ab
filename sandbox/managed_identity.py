"""The App Service / Azure Functions managed-identity endpoint (``IDENTITY_ENDPOINT``).

``GET /msi/token?api-version=2019-08-01&resource=...[&client_id=|&principal_id=|&object_id=
|&mi_res_id=]`` with header ``X-IDENTITY-HEADER``. Errors use App Service's shape
``{"statusCode": 400, "message": "...", "correlationId": "..."}`` (MSAL reads ``statusCode``
and ``message``).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.state import ManagedIdentity, SandboxState, new_guid

logger = logging.getLogger(__name__)

API_VERSION = "2019-08-01"
# Query parameters App Service accepts to pick a user-assigned identity. MSAL sends object_id.
_SELECTORS = ("client_id", "principal_id", "object_id", "mi_res_id")


class ManagedIdentityError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ManagedIdentityService:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[BaseRoute]:
        return [Route("/msi/token", self.token, methods=["GET"])]

    async def token(self, request: Request) -> Response:
        state = self.state
        state.count("mi.requests")
        try:
            body = self._token(request)
        except ManagedIdentityError as exc:
            state.count(f"mi.rejections.{exc.status}")
            logger.info("managed identity request refused: %s %s", exc.status, exc.message)
            return JSONResponse(
                {"statusCode": exc.status, "message": exc.message, "correlationId": new_guid()},
                exc.status,
            )
        state.count("mi.tokens_issued")
        return JSONResponse(body)

    def _token(self, request: Request) -> dict[str, Any]:
        state = self.state
        header = request.headers.get("x-identity-header")
        if header is None:
            raise ManagedIdentityError(400, "The request is missing the X-IDENTITY-HEADER header.")
        if not hmac.compare_digest(header.encode(), state.identity_header.encode()):
            state.remember_secret(header)
            raise ManagedIdentityError(401, "The X-IDENTITY-HEADER value is not valid.")
        params = request.query_params
        api_version = params.get("api-version")
        if api_version != API_VERSION:
            raise ManagedIdentityError(
                400,
                f"The api-version '{api_version or ''}' is not supported; use '{API_VERSION}'.",
            )
        resource = params.get("resource")
        if not resource:
            raise ManagedIdentityError(400, "The 'resource' query parameter is required.")
        if resource.endswith("/.default"):
            resource = resource[: -len("/.default")]
        selectors = {name: params[name] for name in _SELECTORS if params.get(name)}
        if len(selectors) > 1:
            raise ManagedIdentityError(
                400, "Only one of client_id, principal_id, object_id or mi_res_id may be given."
            )
        identity = self._select(selectors)
        state.count(
            f"mi.requests.identity.{identity.client_id}", f"mi.requests.resource.{resource}"
        )
        api = state.find_resource(resource)
        if api is None:
            raise ManagedIdentityError(
                400,
                f"AADSTS500011: The resource principal named {resource} was not found in the "
                f"tenant named {identity.tenant_id}. You might have sent your authentication "
                "request to the wrong tenant.",
            )
        roles = state.consented_roles(identity.tenant_id, identity.object_id, api)
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": state.token_issuer_url(identity.tenant_id),
            "tid": identity.tenant_id,
            "sub": identity.object_id,
            "oid": identity.object_id,
            "appid": identity.client_id,
            "azp": identity.client_id,
            "azpacr": "2",
            "idtyp": "app",
            "ver": "2.0",
            "xms_mirid": identity.resource_id,
        }
        if roles:
            claims["roles"] = roles
        token, exp = state.issuer.issue(claims, state.token_lifetime)
        logger.info(
            "issued managed identity token (identity=%s resource=%s roles=%d)",
            identity.client_id,
            resource,
            len(roles),
        )
        return {
            "access_token": token,
            "expires_on": str(exp),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }

    def _select(self, selectors: dict[str, str]) -> ManagedIdentity:
        state = self.state
        if "client_id" in selectors:
            found = state.find_managed_identity(client_id=selectors["client_id"])
        elif "principal_id" in selectors or "object_id" in selectors:
            oid = selectors.get("principal_id") or selectors["object_id"]
            found = state.find_managed_identity(object_id=oid)
        elif "mi_res_id" in selectors:
            found = state.find_managed_identity(resource_id=selectors["mi_res_id"])
        else:
            found = state.find_managed_identity()
        if found is None:
            what = ", ".join(f"{k}={v}" for k, v in selectors.items()) or "system-assigned"
            raise ManagedIdentityError(400, f"Unable to load the proper Managed Identity ({what}).")
        return found
