"""Entra ID stand-in: OpenID discovery, JWKS and the v2.0 token endpoint (client credentials).

Strict where Entra is strict: assertion signatures against the app's registered certificates,
audience, issuer/subject, lifetime and replay; federated credentials; static ``/.default``
scopes; tokens carrying only the app roles an admin consented to. Errors have Entra's shape::

    {"error": "invalid_client", "error_description": "AADSTS700027: ... Trace ID: ...",
     "error_codes": [700027], "timestamp": "...", "trace_id": "...", "correlation_id": "...",
     "error_uri": "https://login.microsoftonline.com/error?code=700027"}
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.state import AppRegistration, SandboxState, ServicePrincipal, Tenant, new_guid

from .credentials import ASSERTION_TYPE, ClientAuthenticator
from .errors import (
    INJECTABLE,
    EntraError,
    app_not_found,
    error_body,
    missing_parameter,
    tenant_not_found,
)

logger = logging.getLogger("sandbox.entra")


class EntraService:
    """The Entra ID endpoints, bound to one :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.credentials = ClientAuthenticator(state)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                self.openid_configuration,
                methods=["GET"],
            ),
            Route("/{tenant}/discovery/v2.0/keys", self.keys, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
        ]

    # ------------------------------------------------------------------- discovery

    async def openid_configuration(self, request: Request) -> Response:
        self.state.count("entra.requests.openid-configuration")
        name = request.path_params["tenant"]
        tenant = self.state.find_tenant(name)
        if tenant is None:
            err = tenant_not_found(name, "invalid_tenant")
            self.state.count(f"rejections.AADSTS{err.code}")
            return JSONResponse(error_body(err, self.state.clock(), new_guid()), err.status)
        base = f"{request.url.scheme}://{request.url.netloc}"
        tid = tenant.tenant_id
        return JSONResponse(
            {
                "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": self.state.token_issuer_url(tid),
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base}/oidc/userinfo",
                "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "cloud_instance_name",
                    "cloud_instance_host_name",
                    "cloud_graph_host_name",
                    "msgraph_host",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "acr",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "at_hash",
                    "c_hash",
                    "email",
                ],
                "kerberos_endpoint": f"{base}/{tid}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    async def keys(self, request: Request) -> Response:
        self.state.count("entra.requests.keys")
        name = request.path_params["tenant"]
        if self.state.find_tenant(name) is None:
            err = tenant_not_found(name, "invalid_tenant")
            return JSONResponse(error_body(err, self.state.clock(), new_guid()), err.status)
        return JSONResponse(self.state.issuer.jwks())

    # ----------------------------------------------------------------------- token

    async def token(self, request: Request) -> Response:
        state = self.state
        state.count("entra.requests.token", "token_requests")
        correlation_id = request.headers.get("client-request-id") or new_guid()
        path_tenant = request.path_params["tenant"]
        form_data = await request.form()
        form = {key: str(value) for key, value in form_data.items()}
        for sensitive in ("client_secret", "client_assertion"):
            if form.get(sensitive):
                state.remember_secret(form[sensitive])
        client_id = form.get("client_id", "")
        state.count(
            f"token_requests.tenant.{path_tenant}",
            f"token_requests.client.{client_id or '(none)'}",
            f"token_requests.scope.{form.get('scope', '(none)')}",
        )
        try:
            injected = state.take_injected_failure()
            if injected is not None:
                status, error, message = INJECTABLE.get(
                    injected.error_code, (400, "invalid_request", "Injected failure.")
                )
                raise EntraError(status, error, injected.error_code, message)
            body = self._issue(request, form, path_tenant)
        except EntraError as err:
            state.count(f"rejections.AADSTS{err.code}")
            logger.info(
                "token request refused: AADSTS%s %s (tenant=%s client=%s)",
                err.code,
                err.error,
                path_tenant,
                client_id or "-",
            )
            return JSONResponse(
                error_body(err, state.clock(), correlation_id),
                err.status,
                headers={"Cache-Control": "no-store, no-cache"},
            )
        state.count("tokens_issued")
        return JSONResponse(body, headers={"Cache-Control": "no-store, no-cache"})

    def _issue(self, request: Request, form: dict[str, str], path_tenant: str) -> dict[str, Any]:
        """The token response, or the first :class:`EntraError` in Entra's order of checks:
        tenant, grant type, client and scope, the app and its service principal, the client's
        credential, the resource."""
        tenant = self._tenant(path_tenant)
        _check_grant_type(form)
        basic_id, basic_secret = _basic_auth(request)
        self.state.remember_secret(basic_secret)
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise missing_parameter("client_id")
        scope = form.get("scope")
        if not scope:
            raise missing_parameter("scope")
        resource_name = _resource_from_scope(scope)
        app, sp = self._app_and_principal(client_id, tenant)
        auth_method = self._authenticate_client(form, basic_secret, app, tenant, path_tenant)
        roles = self._consented_roles(resource_name, tenant, app)
        return self._token_response(tenant, app, sp, resource_name, roles, auth_method)

    def _tenant(self, path_tenant: str) -> Tenant:
        if path_tenant.lower() in ("common", "consumers"):
            raise EntraError(
                400,
                "invalid_request",
                9001023,
                "The grant type isn't supported over the /common or /consumers endpoints. "
                "Please use the /organizations or tenant-specific endpoint.",
            )
        tenant = self.state.find_tenant(path_tenant)
        if tenant is None:
            raise tenant_not_found(path_tenant)
        return tenant

    def _app_and_principal(
        self, client_id: str, tenant: Tenant
    ) -> tuple[AppRegistration, ServicePrincipal]:
        """The app (registered here, or multi-tenant) and its service principal in the tenant."""
        app = self.state.find_app(client_id)
        if app is None or (not app.multi_tenant and app.home_tenant_id != tenant.tenant_id):
            raise app_not_found(client_id, tenant)
        sp = self.state.service_principal(tenant.tenant_id, app.client_id)
        if sp is None:
            if tenant.tenant_id != app.home_tenant_id:
                # A multi-tenant app that no admin of this tenant has consented to.
                raise app_not_found(client_id, tenant)
            raise EntraError(
                401,
                "invalid_client",
                7000229,
                f"The client application {client_id} is missing service principal in the "
                f"tenant {tenant.tenant_id}. See instructions here: "
                "https://go.microsoft.com/fwlink/?linkid=2225119",
            )
        return app, sp

    def _authenticate_client(
        self,
        form: dict[str, str],
        basic_secret: str,
        app: AppRegistration,
        tenant: Tenant,
        path_tenant: str,
    ) -> str:
        """Exactly one credential, checked; the ``azpacr`` it earns ("1" secret, "2" key)."""
        secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        if secret and assertion:
            raise EntraError(
                400,
                "invalid_request",
                90023,
                "The request must contain only one client credential: 'client_assertion' or "
                "'client_secret', not both.",
            )
        if assertion:
            _check_assertion_type(form.get("client_assertion_type"))
            return self.credentials.check_assertion(assertion, app, tenant, path_tenant)
        if secret:
            self.credentials.check_secret(secret, app)
            return "1"
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )

    def _consented_roles(
        self, resource_name: str, tenant: Tenant, app: AppRegistration
    ) -> list[str]:
        """The app roles of the resource an admin of the tenant consented to for the app."""
        resource = self.state.find_resource(resource_name)
        if resource is None:
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource_name} was not found in the tenant "
                f"named {tenant.display_name}. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in the "
                "tenant. You might have sent your authentication request to the wrong tenant.",
            )
        return self.state.consented_roles(tenant.tenant_id, app.client_id, resource)

    def _token_response(
        self,
        tenant: Tenant,
        app: AppRegistration,
        sp: ServicePrincipal,
        resource_name: str,
        roles: list[str],
        auth_method: str,
    ) -> dict[str, Any]:
        """An app-only access token for the resource, and the response that carries it."""
        state = self.state
        claims: dict[str, Any] = {
            "aud": resource_name,
            "iss": state.token_issuer_url(tenant.tenant_id),
            "tid": tenant.tenant_id,
            "appid": app.client_id,
            "azp": app.client_id,
            "azpacr": auth_method,
            "app_displayname": app.display_name,
            "oid": sp.object_id,
            "sub": sp.object_id,
            "idtyp": "app",
            "ver": "2.0",
        }
        if roles:
            claims["roles"] = roles
        lifetime = state.token_lifetime
        token, _ = state.issuer.issue(claims, lifetime)
        logger.info(
            "issued app token (tenant=%s client=%s resource=%s roles=%d)",
            tenant.tenant_id,
            app.client_id,
            resource_name,
            len(roles),
        )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
        if state.refresh_in is not None:
            body["refresh_in"] = state.refresh_in
        return body


def _check_grant_type(form: dict[str, str]) -> None:
    grant_type = form.get("grant_type")
    if not grant_type:
        raise missing_parameter("grant_type")
    if grant_type != "client_credentials":
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )


def _check_assertion_type(assertion_type: str | None) -> None:
    if not assertion_type:
        raise missing_parameter("client_assertion_type")
    if assertion_type != ASSERTION_TYPE:
        raise EntraError(
            400,
            "invalid_request",
            90014,
            f"The client_assertion_type '{assertion_type}' is not supported. "
            f"Use '{ASSERTION_TYPE}'.",
        )


def _resource_from_scope(scope: str) -> str:
    scopes = scope.split()
    defaults = [s for s in scopes if s.endswith("/.default")]
    if len(defaults) > 1:
        raise EntraError(
            400,
            "invalid_scope",
            700022,
            f"The provided value for the input parameter scope '{scope}' isn't valid because it "
            "contains more than one resource. Client credential flows must request a single "
            "static scope: <resource>/.default.",
        )
    if len(scopes) != 1 or len(defaults) != 1 or scopes[0] == "/.default":
        raise EntraError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    return scopes[0][: -len("/.default")]


def _basic_auth(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return "", ""
    try:
        decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password
