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
import datetime as dt
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.state import AppRegistration, SandboxState, Tenant, new_guid
from sandbox.tokens import InvalidToken, split_jwt, verify_rsa_signature

logger = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300.0  # seconds of tolerated clock skew for nbf/exp
CERT_DOCS = (
    "Review the documentation at "
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
)
FIC_DOCS = (
    "Check your federated identity credential Subject, Audience and Issuer against the "
    "presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
)
SUPPORTED_ALGS = ("RS256", "PS256")


@dataclass
class EntraError(Exception):
    """A refusal of the token endpoint; rendered as Entra's JSON error."""

    status: int
    error: str
    code: int
    message: str


def _timestamp(now: float) -> str:
    return dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def error_body(err: EntraError, now: float, correlation_id: str) -> dict[str, Any]:
    trace_id = new_guid()
    stamp = _timestamp(now)
    return {
        "error": err.error,
        "error_description": (
            f"AADSTS{err.code}: {err.message} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}"
        ),
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={err.code}",
    }


def tenant_not_found(name: str, error: str = "invalid_request") -> EntraError:
    return EntraError(
        400,
        error,
        90002,
        f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


def missing_parameter(name: str) -> EntraError:
    return EntraError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


# What fail_next_token_requests(n, code) answers for the codes tests are likely to inject.
INJECTABLE: dict[int, tuple[int, str, str]] = {
    700027: (401, "invalid_client", "Client assertion failed signature validation. (injected)"),
    700024: (
        401,
        "invalid_client",
        "Client assertion is not within its valid time range. (injected)",
    ),
    7000214: (401, "invalid_client", "Certificate has been revoked. (injected)"),
    7000215: (401, "invalid_client", "Invalid client secret provided. (injected)"),
    700016: (400, "unauthorized_client", "Application was not found in the directory. (injected)"),
    7000229: (
        401,
        "invalid_client",
        "The client application is missing service principal in the tenant. (injected)",
    ),
    90002: (400, "invalid_request", "Tenant not found. (injected)"),
    500011: (400, "invalid_resource", "The resource principal was not found. (injected)"),
    90006: (503, "temporarily_unavailable", "The service is temporarily unavailable. (injected)"),
    90024: (
        503,
        "temporarily_unavailable",
        "RequestBudgetExceededError - A transient error has occurred. Try again. (injected)",
    ),
    50196: (
        400,
        "invalid_grant",
        "The server terminated an operation because it encountered "
        "a client request loop. (injected)",
    ),
}


class EntraService:
    """The Entra ID endpoints, bound to one :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

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
        state = self.state
        if path_tenant.lower() in ("common", "consumers"):
            raise EntraError(
                400,
                "invalid_request",
                9001023,
                "The grant type isn't supported over the /common or /consumers endpoints. "
                "Please use the /organizations or tenant-specific endpoint.",
            )
        tenant = state.find_tenant(path_tenant)
        if tenant is None:
            raise tenant_not_found(path_tenant)
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
        basic_id, basic_secret = _basic_auth(request)
        state.remember_secret(basic_secret)
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise missing_parameter("client_id")
        scope = form.get("scope")
        if not scope:
            raise missing_parameter("scope")
        resource_name = _resource_from_scope(scope)

        app = state.find_app(client_id)
        if app is None or (not app.multi_tenant and app.home_tenant_id != tenant.tenant_id):
            raise _app_not_found(client_id, tenant)
        sp = state.service_principal(tenant.tenant_id, app.client_id)
        if sp is None:
            if tenant.tenant_id != app.home_tenant_id:
                # A multi-tenant app that no admin of this tenant has consented to.
                raise _app_not_found(client_id, tenant)
            raise EntraError(
                401,
                "invalid_client",
                7000229,
                f"The client application {client_id} is missing service principal in the "
                f"tenant {tenant.tenant_id}. See instructions here: "
                "https://go.microsoft.com/fwlink/?linkid=2225119",
            )

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
            assertion_type = form.get("client_assertion_type")
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
            auth_method = self._check_assertion(assertion, app, tenant, path_tenant)
        elif secret:
            self._check_secret(secret, app)
            auth_method = "1"
        else:
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )

        resource = state.find_resource(resource_name)
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
        roles = state.consented_roles(tenant.tenant_id, app.client_id, resource)
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

    # ------------------------------------------------------------- authentication

    def _check_secret(self, secret: str, app: AppRegistration) -> None:
        now = self.state.clock()
        for candidate in app.secrets:
            if hmac.compare_digest(candidate.value.encode(), secret.encode()):
                if candidate.expires <= now:
                    raise EntraError(
                        401,
                        "invalid_client",
                        7000222,
                        f"The provided client secret keys for app '{app.client_id}' are expired. "
                        "Visit the Azure portal to create new keys for your app: "
                        "https://aka.ms/NewClientSecret, or consider using certificate "
                        "credentials for added security: https://aka.ms/certCreds.",
                    )
                return
        raise EntraError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{app.client_id}'.",
        )

    def _check_assertion(
        self, assertion: str, app: AppRegistration, tenant: Tenant, path_tenant: str
    ) -> str:
        try:
            header, claims, signing_input, signature = split_jwt(assertion)
        except InvalidToken as exc:
            raise EntraError(
                401, "invalid_client", 50027, f"JWT token is invalid or malformed. {exc}"
            ) from None
        alg = str(header.get("alg", ""))
        if header.get("x5t#S256") or header.get("x5t"):
            if alg not in SUPPORTED_ALGS:
                raise EntraError(
                    401,
                    "invalid_client",
                    5002738,
                    f"Invalid JWT token. '{alg}' is not a supported signature algorithm. "
                    f"Supported signing algorithms are: '{', '.join(SUPPORTED_ALGS)}'",
                )
            self._check_certificate_assertion(header, claims, signing_input, signature, app)
            self._check_assertion_claims(claims, app, tenant, path_tenant)
            jti = claims.get("jti")
            if not isinstance(jti, str) or not jti:
                raise EntraError(
                    401,
                    "invalid_client",
                    50027,
                    "JWT token is invalid or malformed. The client assertion must contain a "
                    "'jti' claim.",
                )
            if not self.state.remember_jti(app.client_id, jti, float(claims.get("exp", 0))):
                raise EntraError(
                    401,
                    "invalid_client",
                    700027,
                    "Client assertion failed validation. [Reason - The assertion's 'jti' "
                    f"'{jti}' has already been used; client assertions are single-use (replay "
                    "detected).] " + CERT_DOCS,
                )
            return "2"
        if header.get("kid") == self.state.issuer.kid:
            self._check_federated_assertion(assertion, app)
            return "2"
        raise EntraError(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found., "
            "The assertion header has neither 'x5t#S256' nor 'x5t' and its issuer is not a "
            "trusted federated issuer.] " + CERT_DOCS,
        )

    def _check_certificate_assertion(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        signing_input: bytes,
        signature: bytes,
        app: AppRegistration,
    ) -> None:
        thumbprint = str(header.get("x5t#S256") or header.get("x5t"))
        key = None
        for name in ("x5t#S256", "x5t"):
            value = header.get(name)
            # MSAL pads its base64url thumbprints with "="; Entra accepts both forms.
            if isinstance(value, str) and value.rstrip("=") in app.keys:
                key = app.keys[value.rstrip("=")]
                break
        if key is None:
            shown = _thumbprint_hex(thumbprint)
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not "
                "registered on application. [Reason - The key was not found., Thumbprint of key "
                f"used by client: '{shown}', Please visit the Azure Portal, Graph Explorer or "
                f"directly use MS Graph to see configured keys for app Id '{app.client_id}'.]",
            )
        now = self.state.clock()
        if not key.not_before <= now <= key.not_after:
            raise EntraError(
                401,
                "invalid_client",
                7000274,
                "Key was found, but the certificate used to sign the client assertion is not "
                f"within its validity period (valid from {_iso(key.not_before)} to "
                f"{_iso(key.not_after)}). Thumbprint of key used by client: "
                f"'{key.thumbprint_hex}'.",
            )
        try:
            verify_rsa_signature(key.public_key, str(header.get("alg")), signing_input, signature)
        except InvalidToken:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. [Reason - The provided signature "
                "value did not match the expected signature value., Thumbprint of key used by "
                f"client: '{key.thumbprint_hex}', Found key 'Start={_iso(key.not_before)}, "
                f"End={_iso(key.not_after)}']",
            ) from None

    def _check_assertion_claims(
        self, claims: dict[str, Any], app: AppRegistration, tenant: Tenant, path_tenant: str
    ) -> None:
        iss, sub = claims.get("iss"), claims.get("sub")
        if iss != app.client_id:
            raise EntraError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter. "
                + CERT_DOCS,
            )
        if sub != iss:
            raise EntraError(
                401,
                "invalid_client",
                50048,
                "Subject mismatches Issuer claim in the client assertion.",
            )
        aud = claims.get("aud")
        if isinstance(aud, list):
            if len(aud) != 1:
                raise EntraError(
                    401,
                    "invalid_client",
                    5002741,
                    "Number of audience values in the provided client credential exceed maximum "
                    f"allowed. {len(aud)} audience values provided, maximum allowed is 1.",
                )
            aud = aud[0]
        accepted = {
            f"{base}/{name}/oauth2/v2.0/token".lower()
            for base in self.state.base_urls()
            for name in (tenant.tenant_id, tenant.domain, path_tenant)
        }
        if not isinstance(aud, str) or aud.lower() not in accepted:
            raise EntraError(
                401,
                "invalid_client",
                700023,
                "Client assertion audience claim does not match Realm issuer. " + CERT_DOCS,
            )
        self._check_times(claims)

    def _check_times(self, claims: dict[str, Any]) -> None:
        """Refuse an expired or not-yet-valid assertion; any lifetime is accepted.

        "Microsoft Entra ID doesn't place restrictions on the exp time currently"
        (learn.microsoft.com/entra/identity-platform/certificate-credentials, claims table):
        azure-identity's async CertificateCredential signs 30-minute assertions. Replay (jti)
        and audience are checked by the callers."""
        now = self.state.clock()
        try:
            exp = float(claims["exp"])
            nbf = float(claims.get("nbf", claims.get("iat", now)))
        except (KeyError, TypeError, ValueError):
            raise EntraError(
                401,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed. The client assertion must contain a numeric "
                "'exp' claim.",
            ) from None
        valid_range = (
            f"Current time: {_iso(now)}, assertion valid from {_iso(nbf)}, expiry time of "
            f"assertion {_iso(exp)}. "
        )
        if exp <= now - CLOCK_SKEW or nbf > now + CLOCK_SKEW:
            raise EntraError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. " + valid_range + CERT_DOCS,
            )

    def _check_federated_assertion(self, assertion: str, app: AppRegistration) -> None:
        issuer = self.state.issuer
        try:
            _, claims = issuer.verify_signature(assertion)
        except InvalidToken as exc:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation. [Reason - {exc}]",
            ) from None
        self._check_times(claims)
        if issuer.is_revoked(claims):
            raise EntraError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. The presented token was "
                "revoked. " + FIC_DOCS,
            )
        iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
        matching_issuer = [c for c in app.federated_credentials if c.issuer == iss]
        if not matching_issuer:
            raise EntraError(
                401,
                "invalid_client",
                700211,
                f"No matching federated identity record found for presented assertion issuer "
                f"'{iss}'. " + FIC_DOCS,
            )
        matching_subject = [c for c in matching_issuer if c.subject == sub]
        if not matching_subject:
            raise EntraError(
                401,
                "invalid_client",
                700213,
                f"No matching federated identity record found for presented assertion subject "
                f"'{sub}'. " + FIC_DOCS,
            )
        if not any(aud in c.audiences for c in matching_subject):
            raise EntraError(
                401,
                "invalid_client",
                700212,
                f"No matching federated identity record found for presented assertion audience "
                f"'{aud}'. " + FIC_DOCS,
            )


def _app_not_found(client_id: str, tenant: Tenant) -> EntraError:
    return EntraError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory "
        f"'{tenant.display_name}'. This can happen if the application has not been installed by "
        "the administrator of the tenant or consented to by any user in the tenant. You may "
        "have sent your authentication request to the wrong tenant.",
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


def _thumbprint_hex(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex().upper()
    except (binascii.Error, ValueError):
        return value


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
