"""``doctor``: check the configuration end to end and say what to fix.

Checks, each one a line that passes or FAILS (warnings never fail):

- settings: every app setting parses (non-finite numbers, URLs with credentials and
  schedules the host would reject are refused there), and the ones the function app cannot
  run without are set: ``DAEMON_JOBS_QUEUE`` and ``DAEMON_SWEEP_SCHEDULE`` (the bindings read
  ``%DAEMON_JOBS_QUEUE%`` / ``%DAEMON_SWEEP_SCHEDULE%``; the host does not index a function
  whose binding expression names a missing setting) and ``DAEMON_USER_DOMAIN`` (``provision``
  creates users in it);
- storage (``shared.doctor.storage``);
- Key Vault access and the certificate (validity, days to expiry), for the certificate modes,
  and a token for every allowed tenant (``shared.doctor.identity``).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.doctor.fixes import fix_for
from shared.doctor.identity import certificate_check, token_check
from shared.doctor.report import Check, Report
from shared.doctor.storage import STORAGE_TIMEOUT, storage_check
from shared.errors import DaemonError, SettingError
from shared.instance import Instance
from shared.settings import AuthMode, Settings, load_settings

__all__ = ["run_doctor", "settings_check"]

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


async def run_doctor(env: Mapping[str, str], *, storage_timeout: float = STORAGE_TIMEOUT) -> Report:
    """Run every check in order; stop early when the settings or the credential cannot load."""
    try:
        settings = load_settings(env)
    except SettingError as exc:
        return Report([Check("settings", False, str(exc), fix_for(exc, None))])
    checks = [settings_check(env, settings), await storage_check(env, settings, storage_timeout)]
    try:
        instance = Instance(settings)
    except DaemonError as exc:
        checks.append(Check("credential", False, str(exc), fix_for(exc, settings)))
        return Report(checks)
    try:
        if settings.uses_key_vault:
            checks.append(await certificate_check(instance))
        for tenant in settings.allowed_tenants:
            checks.append(await token_check(instance, tenant))
    finally:
        instance.close()
    return Report(checks)


def settings_check(env: Mapping[str, str], settings: Settings) -> Check:
    """The settings parsed; FAIL when one the function app needs is unset, warn on risky ones."""
    missing = [name for name in _REQUIRED_BY_APP if not (env.get(name) or "").strip()]
    detail = (
        f"auth mode {settings.auth_mode.value}, home tenant {settings.tenant_id}, "
        f"API {settings.api_base_url} scope {settings.api_scope}"
    )
    if missing:
        detail = "; ".join(f"{name} is not set: {_REQUIRED_BY_APP[name]}" for name in missing)
    return Check(
        "settings",
        not missing,
        detail,
        f"set {', '.join(missing)} (see README, Configuration)" if missing else None,
        warnings=_settings_warnings(settings),
        data={
            "auth_mode": settings.auth_mode.value,
            "allowed_tenants": list(settings.allowed_tenants),
            "client_id": settings.client_id,
        },
    )


def _settings_warnings(settings: Settings) -> list[str]:
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
    return warnings
