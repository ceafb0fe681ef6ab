"""``doctor``: check the configuration end to end and say what to fix.

Checks, each one a line that passes or FAILS (warnings never fail):

- settings: every app setting parses (non-finite numbers, URLs with credentials and
  schedules the host would reject are refused there), and the ones the function app cannot
  run without are set: ``DAEMON_JOBS_QUEUE`` and ``DAEMON_SWEEP_SCHEDULE`` (the bindings read
  ``%DAEMON_JOBS_QUEUE%`` / ``%DAEMON_SWEEP_SCHEDULE%``; the host does not index a function
  whose binding expression names a missing setting) and ``DAEMON_USER_DOMAIN`` (``provision``
  creates users in it);
- storage: ``AzureWebJobsStorage`` (a connection string, or the identity-based
  ``__accountName`` / ``__queueServiceUri`` + ``__tableServiceUri`` form) is set, and its
  queue and table services answer within a few seconds (no retries);
- Key Vault access and the certificate (validity, days to expiry), for the certificate modes;
- a token for every allowed tenant, showing its non-secret claims (aud, tid, appid, roles,
  exp) — never the token itself — and comparing its ``roles`` with the application
  permissions the jobs need (``shared.permissions``): each missing one is named, with the
  admin-consent step.
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
    KeyVaultError,
    KeyVaultNotFoundError,
    SettingError,
    StorageUnreachableError,
    TenantNotAllowedError,
    TokenRequestError,
)
from shared.instance import Instance
from shared.permissions import Requirement, missing_permissions
from shared.settings import AuthMode, Settings, load_settings
from shared.storage import DEFAULT_CONNECTION, StorageConnection, storage_connection

__all__ = [
    "STORAGE_TIMEOUT",
    "Check",
    "Report",
    "StorageUnreachableError",
    "admin_consent_url",
    "probe_storage",
    "run_doctor",
    "token_claims",
]

EXPIRY_WARNING_DAYS = 30
STORAGE_TIMEOUT = 5.0  # seconds per storage call in a probe; the probe never retries
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
# Settings the function app cannot run without (settings parsing gives them defaults so that
# one function does not fail for another's setting; doctor insists).
_REQUIRED_BY_APP = {
    "DAEMON_JOBS_QUEUE": "the queue trigger and the sweep's output binding read "
    "%DAEMON_JOBS_QUEUE%: the host does not index the functions without it "
    "(sample: daemon-jobs)",
    "DAEMON_SWEEP_SCHEDULE": "the sweep timer's binding reads %DAEMON_SWEEP_SCHEDULE%: the host "
    "does not index it without it (sample: '0 */15 * * * *')",
    "DAEMON_USER_DOMAIN": "provision creates joiners as <given>.<surname>.<employeeId>@"
    "DAEMON_USER_DOMAIN: every joiner fails without it (a verified domain of the tenant)",
}


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
    if isinstance(exc, KeyVaultError) and "AKV10032" in str(exc):
        return (
            "the token is from another tenant than the vault's: use an identity of the vault's "
            "tenant (az login --tenant <vault tenant>, or the app's managed identity)"
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
        if codes & {70021, 700211, 700212, 700213}:
            return (
                "check the app registration's federated credential: issuer, subject (the "
                "managed identity's object id) and audience api://AzureADTokenExchange must "
                "match the identity's token"
            )
        if 50049 in codes:
            return "check DAEMON_AUTHORITY_HOST: the authority is unknown or invalid"
        if 500011 in codes:
            return "check DAEMON_API_SCOPE: the resource is unknown in this tenant"
        return "see the error above; run with --verbose for the SDK's log"
    return "see the error above"


def _probe_sync(
    connection: StorageConnection, queues: tuple[str, ...], tables: bool, timeout: float
) -> list[str]:
    from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
    from azure.core.exceptions import ResourceNotFoundError as NotFound
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueClient

    options: dict[str, Any] = {
        "retry_total": 0,
        "connection_timeout": timeout,
        "read_timeout": timeout,
    }
    notes: list[str] = []

    def failed(service: str, endpoint: str | None, exc: Exception) -> StorageUnreachableError:
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
        ):
            why = "refused the credential (check the account key, SAS or the identity's role)"
        elif isinstance(exc, HttpResponseError):
            why = f"answered HTTP {exc.status_code}"
        else:
            why = f"did not answer within {timeout:g} s ({type(exc).__name__})"
        return StorageUnreachableError(
            f"{connection.setting}: the {service} service at {endpoint} {why}"
        )

    for queue in queues:
        endpoint = connection.queue_endpoint
        if endpoint is None:
            raise StorageUnreachableError(f"{connection.setting} gives no queue endpoint")
        client = QueueClient(
            account_url=endpoint, queue_name=queue, credential=connection.credential, **options
        )
        try:
            client.get_queue_properties()
        except NotFound:
            notes.append(f"queue {queue} does not exist yet (the first message creates it)")
        except AzureError as exc:
            raise failed("queue", endpoint, exc) from None
        finally:
            client.close()
    if tables:
        endpoint = connection.table_endpoint
        if endpoint is None:
            raise StorageUnreachableError(f"{connection.setting} gives no table endpoint")
        service = TableServiceClient(endpoint=endpoint, credential=connection.credential, **options)
        try:
            next(iter(service.list_tables(results_per_page=1).by_page()), None)
        except AzureError as exc:
            raise failed("table", endpoint, exc) from None
        finally:
            service.close()
    return notes


async def probe_storage(
    env: Mapping[str, str],
    *,
    connection: str = DEFAULT_CONNECTION,
    queues: tuple[str, ...] = (),
    tables: bool = True,
    timeout: float = STORAGE_TIMEOUT,
) -> list[str]:
    """Check that a storage connection's queue and table services answer, quickly.

    Each call has ``timeout`` seconds and no retry. Returns notes (a queue that does not
    exist yet); raises :class:`SettingError` for a missing or malformed connection and
    :class:`StorageUnreachableError` when a service does not answer or refuses. Messages
    name the setting and the endpoint, never a key or connection string.
    """
    parsed = storage_connection(env, connection)
    return await asyncio.to_thread(_probe_sync, parsed, queues, tables, timeout)


async def _storage_check(env: Mapping[str, str], settings: Settings, timeout: float) -> Check:
    name = "storage"
    try:
        parsed = storage_connection(env, DEFAULT_CONNECTION)
        notes = await asyncio.to_thread(_probe_sync, parsed, (settings.jobs_queue,), True, timeout)
    except SettingError as exc:
        return Check(
            name,
            False,
            str(exc),
            f"set {DEFAULT_CONNECTION} to the function app's storage account connection "
            f"string, or {DEFAULT_CONNECTION}__accountName with "
            f"{DEFAULT_CONNECTION}__credential=managedidentity (UseDevelopmentStorage=true "
            "for a local Azurite)",
        )
    except StorageUnreachableError as exc:
        return Check(
            name,
            False,
            str(exc),
            "check that the account (or Azurite) is running and reachable from here, and "
            "that the identity has Storage Queue Data Contributor and Storage Table Data "
            "Contributor on it (identity-based connections)",
        )
    kind = "identity-based" if parsed.identity_based else "connection string"
    return Check(
        name,
        True,
        f"{DEFAULT_CONNECTION} ({kind}): queue {settings.jobs_queue} and the tables answer",
        warnings=notes,
        data={"queue_endpoint": parsed.queue_endpoint, "table_endpoint": parsed.table_endpoint},
    )


async def run_doctor(env: Mapping[str, str], *, storage_timeout: float = STORAGE_TIMEOUT) -> Report:
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
    missing = [name for name in _REQUIRED_BY_APP if not (env.get(name) or "").strip()]
    detail = (
        f"auth mode {settings.auth_mode.value}, home tenant {settings.tenant_id}, "
        f"API {settings.api_base_url} scope {settings.api_scope}"
    )
    if missing:
        detail = "; ".join(f"{name} is not set: {_REQUIRED_BY_APP[name]}" for name in missing)
    checks.append(
        Check(
            "settings",
            not missing,
            detail,
            f"set {', '.join(missing)} (see README, Configuration)" if missing else None,
            warnings=warnings,
            data={
                "auth_mode": settings.auth_mode.value,
                "allowed_tenants": list(settings.allowed_tenants),
                "client_id": settings.client_id,
            },
        )
    )

    checks.append(await _storage_check(env, settings, storage_timeout))

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
