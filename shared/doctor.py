"""``doctor``: check the configuration end to end and say what to fix.

Checks the settings, Key Vault access and the certificate (validity, days to expiry), and a
token for every allowed tenant, showing the token's non-secret claims (aud, tid, appid,
roles, exp) — never the token itself.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import (
    CertificateError,
    DaemonError,
    KeyVaultAccessDeniedError,
    KeyVaultNotFoundError,
    SettingError,
    TenantNotAllowedError,
    TokenRequestError,
)
from shared.instance import Instance
from shared.settings import AuthMode, Settings, load_settings

__all__ = ["Check", "Report", "admin_consent_url", "run_doctor", "token_claims"]

EXPIRY_WARNING_DAYS = 30
_SHOWN_CLAIMS = ("aud", "iss", "tid", "appid", "azp", "oid", "idtyp", "roles", "exp")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warnings: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def render(self) -> str:
        lines = []
        for check in self.checks:
            lines.append(f"[{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
            lines.extend(f"       warning: {warning}" for warning in check.warnings)
            if check.fix:
                lines.append(f"       fix: {check.fix}")
        lines.append("doctor: all checks passed" if self.ok else "doctor: some checks failed")
        return "\n".join(lines)


def admin_consent_url(settings: Settings, tenant: str) -> str:
    """Where a tenant's admin grants the app's application permissions, once."""
    if settings.client_id is None:
        raise SettingError(
            "DAEMON_CLIENT_ID", "is needed for an admin-consent URL (an app registration)"
        )
    return f"{settings.authority_host}/{tenant}/adminconsent?client_id={settings.client_id}"


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


def _fix_for(exc: Exception, settings: Settings | None, tenant: str | None = None) -> str:
    if isinstance(exc, SettingError):
        return f"set {exc.setting} correctly (see README, Configuration)"
    if isinstance(exc, TenantNotAllowedError):
        return "add the tenant to DAEMON_ALLOWED_TENANTS after its admin has consented"
    if isinstance(exc, KeyVaultAccessDeniedError):
        return (
            "assign the role named above to the Function app's managed identity (or your "
            "developer account) on the vault: az role assignment create --role '<role>' "
            "--assignee <principal id> --scope <vault resource id>"
        )
    if isinstance(exc, KeyVaultNotFoundError):
        return "check DAEMON_KEY_VAULT_URL and DAEMON_CERTIFICATE_NAME"
    if isinstance(exc, CertificateError):
        return (
            "renew or enable the certificate in Key Vault and upload its public part to the "
            "app registration (Certificates & secrets)"
        )
    if isinstance(exc, TokenRequestError):
        codes = set(exc.codes)
        consent = ""
        if settings is not None and settings.client_id and tenant:
            consent = f" ({admin_consent_url(settings, tenant)})"
        if codes & {700016, 7000229, 65001}:
            return (
                "check DAEMON_CLIENT_ID and DAEMON_TENANT_ID; for another tenant its admin "
                f"must consent first{consent}"
            )
        if 90002 in codes:
            return "the tenant does not exist: check DAEMON_TENANT_ID / DAEMON_ALLOWED_TENANTS"
        if codes & {7000215, 7000222}:
            return "the client secret is wrong or expired: create a new one and update it"
        if codes & {700027, 700024, 7000274, 7000277}:
            return (
                "upload the Key Vault certificate's public part to the app registration "
                "(thumbprint shown by the certificate check), or add the federated credential"
            )
        if 500011 in codes:
            return "check DAEMON_API_SCOPE: the resource is unknown in this tenant"
        return "see the error above; run with --verbose for the SDK's log"
    return "see the error above"


async def run_doctor(env: Mapping[str, str]) -> Report:
    checks: list[Check] = []
    try:
        settings = load_settings(env)
    except SettingError as exc:
        checks.append(Check("settings", False, str(exc), _fix_for(exc, None)))
        return Report(checks)

    warnings = []
    if settings.auth_mode is AuthMode.CLIENT_SECRET:
        warnings.append(
            "client-secret mode: a secret can leak and expires silently; prefer "
            "managed-identity, federated-managed-identity or a Key Vault certificate"
        )
    if settings.uses_key_vault and not settings.key_vault_verify_challenge_resource:
        warnings.append(
            "DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE=false: the Key Vault SDK will not check "
            "that the vault's host matches the challenge resource; use only for emulators"
        )
    for name in ("DAEMON_JOBS_QUEUE", "DAEMON_SWEEP_SCHEDULE"):
        if not (env.get(name) or "").strip():
            warnings.append(
                f"{name} is not set: the function bindings read %{name}% and the host will "
                "not index the function without it"
            )
    checks.append(
        Check(
            "settings",
            True,
            f"auth mode {settings.auth_mode.value}, home tenant {settings.tenant_id}, "
            f"API {settings.api_base_url} scope {settings.api_scope}",
            warnings=warnings,
            data={
                "auth_mode": settings.auth_mode.value,
                "allowed_tenants": list(settings.allowed_tenants),
                "client_id": settings.client_id,
            },
        )
    )

    try:
        instance = Instance(settings)
    except DaemonError as exc:
        checks.append(Check("credential", False, str(exc), _fix_for(exc, settings)))
        return Report(checks)

    try:
        if settings.uses_key_vault:
            checks.append(await _certificate_check(instance))
        for tenant in settings.allowed_tenants:
            checks.append(await _token_check(instance, tenant))
    finally:
        instance.close()
    return Report(checks)


async def _certificate_check(instance: Instance) -> Check:
    try:
        info = await asyncio.to_thread(instance.credential.certificate)
    except DaemonError as exc:
        return Check("certificate", False, str(exc), _fix_for(exc, instance.settings))
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


async def _token_check(instance: Instance, tenant: str) -> Check:
    name = f"token for tenant {tenant}"
    try:
        token = await instance.token_cache.get_token(tenant)
    except DaemonError as exc:
        return Check(name, False, str(exc), _fix_for(exc, instance.settings, tenant))
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
    return Check(name, True, detail, data=claims)
