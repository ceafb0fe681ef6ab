"""``doctor``'s identity checks: the certificate in Key Vault, and a token for every tenant.

A token is shown by its non-secret claims (aud, tid, appid, roles, exp), never itself, and
its ``roles`` are compared with the application permissions the jobs need
(``shared.permissions``): each missing one is named, with the admin-consent step.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from typing import Any

from shared.doctor.fixes import admin_consent_url, fix_for
from shared.doctor.report import Check
from shared.errors import DaemonError
from shared.instance import Instance
from shared.permissions import Requirement, missing_permissions
from shared.settings import AuthMode, Settings

__all__ = ["certificate_check", "token_check", "token_claims"]

EXPIRY_WARNING_DAYS = 30
# The jobs the function app runs: the sweep timer and the queue jobs (shared.jobs.dispatch).
APP_JOBS = ("sweep", "provision", "operations")
# Hosts of Microsoft Graph per cloud: the permission names in shared.permissions are Graph's.
GRAPH_RESOURCES = frozenset(
    {
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
    }
)

_SHOWN_CLAIMS = ("aud", "iss", "tid", "appid", "azp", "oid", "idtyp", "roles", "exp")


def token_claims(token: str) -> dict[str, Any]:
    """The non-secret claims of a JWT access token (not verified: for display only)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    if not isinstance(payload, dict):
        return {}
    return {name: payload[name] for name in _SHOWN_CLAIMS if name in payload}


async def certificate_check(instance: Instance) -> Check:
    """The certificate loads from Key Vault; warns when it expires within 30 days."""
    try:
        info = await asyncio.to_thread(instance.credential.certificate)
    except DaemonError as exc:
        return Check("certificate", False, str(exc), fix_for(exc, instance.settings))
    assert info is not None
    now = dt.datetime.fromtimestamp(time.time(), dt.timezone.utc)
    days = info.days_to_expiry(now)
    warnings = []
    if days < EXPIRY_WARNING_DAYS:
        warnings.append(
            f"expires in {days:.0f} days: add a new version in Key Vault and register it on "
            "the app (rotation needs no restart)"
        )
    return Check(
        "certificate",
        True,
        f"'{info.name}' version {info.version} (x5t#S256 {info.thumbprint_s256}), valid "
        f"{info.not_before:%Y-%m-%d} to {info.not_after:%Y-%m-%d}, {days:.0f} days left, "
        f"signing {info.signing_mode.value}",
        warnings=warnings,
        data={
            "name": info.name,
            "version": info.version,
            "thumbprint_s256": info.thumbprint_s256,
            "subject": info.subject,
            "not_after": info.not_after.isoformat(),
            "days_to_expiry": round(days, 1),
            "signing_mode": info.signing_mode.value,
        },
    )


async def token_check(instance: Instance, tenant: str) -> Check:
    """A token for ``tenant``: its claims, and the app roles the jobs need that it lacks."""
    name = f"token for tenant {tenant}"
    try:
        token = await instance.token_cache.get_token(tenant)
    except DaemonError as exc:
        return Check(name, False, str(exc), fix_for(exc, instance.settings, tenant))
    claims = token_claims(token)
    roles = claims.get("roles") or []
    if not claims:
        return Check(name, True, "got a token (opaque, not a JWT: claims not shown)")
    expires = dt.datetime.fromtimestamp(float(claims.get("exp", 0)), dt.timezone.utc)
    detail = (
        f"aud {claims.get('aud')}, tid {claims.get('tid')}, appid "
        f"{claims.get('appid') or claims.get('azp')}, roles {', '.join(roles) or '(none)'}, "
        f"expires {expires:%Y-%m-%d %H:%M:%SZ}"
    )
    if not roles:
        fix = "grant the app's application permissions and admin consent in this tenant"
        if instance.settings.client_id:
            fix += f": {admin_consent_url(instance.settings, tenant)}"
        return Check(name, False, detail + " — the token carries no app roles", fix, data=claims)
    settings = instance.settings
    if settings.api_resource.rstrip("/") not in GRAPH_RESOURCES:
        return Check(
            name,
            True,
            detail,
            warnings=[
                f"the API {settings.api_resource} is not Microsoft Graph: its permissions are "
                "not checked against the jobs' needs"
            ],
            data=claims,
        )
    missing = missing_permissions([str(role) for role in roles], APP_JOBS)
    if missing:
        return Check(
            name,
            False,
            detail + " — missing application permission(s): " + _describe(missing),
            _permissions_fix(settings, tenant, missing),
            data={**claims, "missing_permissions": [r.least for r in missing]},
        )
    return Check(name, True, detail, data=claims)


def _describe(missing: list[Requirement]) -> str:
    parts = []
    for requirement in missing:
        alternatives = requirement.any_of[1:]
        also = f", or {' / '.join(alternatives)}" if alternatives else ""
        parts.append(f"{requirement.least} ({requirement.what}{also})")
    return "; ".join(parts)


def _permissions_fix(settings: Settings, tenant: str, missing: list[Requirement]) -> str:
    names = ", ".join(r.least for r in missing)
    if settings.auth_mode is AuthMode.MANAGED_IDENTITY:
        return (
            f"assign the app role(s) {names} of Microsoft Graph to the Function app's managed "
            "identity (an app role assignment on its service principal, e.g. "
            "New-MgServicePrincipalAppRoleAssignment; there is no consent prompt for a "
            "managed identity); a new token carries them"
        )
    fix = (
        f"App registrations → API permissions → Add → Microsoft Graph → Application "
        f"permissions: {names}; then grant admin consent"
    )
    if settings.client_id:
        fix += (
            f" (in tenant {tenant}: {admin_consent_url(settings, tenant)}, printed by "
            f"python -m shared consent-url --tenant {tenant})"
        )
    return fix
