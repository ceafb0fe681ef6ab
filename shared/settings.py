"""App settings, parsed once into a frozen object, from one table.

The Functions host exposes app settings as environment variables; the daemon reads them
exactly once, through :func:`load_settings`, from a mapping passed in (``os.environ`` in
production, a plain dict in tests). Every error names the app setting and says what was
expected; secret values are never echoed.

``SETTINGS`` is the one table of the settings read: each row is a :class:`Setting` (name,
default, parser, description), and each row fills the :class:`Settings` attribute named after
it. A setting's default is written there once, as text, and parsed like a value that was set.
README's configuration table, ``local.settings.sample.json`` and the Bicep ``daemonSettings``
are checked against the table (``tests/test_docs.py``, ``tests/test_infra.py``). The rules
between settings (what an auth mode requires or ignores, the home tenant always allowed) are
the small functions after the table. The parsers are in ``shared.settings_parsers``, the
``Settings`` class and its enumerations in ``shared.settings_model`` (import them from here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from shared import settings_parsers as p
from shared.errors import SettingError
from shared.settings_model import KEY_VAULT_MODES, AuthMode, Settings, SigningMode
from shared.settings_parsers import PUBLIC_CLOUD_AUTHORITY, QUEUE_NAME_RE, Parser, parse_tenant

__all__ = [
    "PUBLIC_CLOUD_AUTHORITY",
    "QUEUE_NAME_RE",
    "SETTINGS",
    "AuthMode",
    "Setting",
    "Settings",
    "SigningMode",
    "load_settings",
    "parse_tenant",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One app setting: a row of ``SETTINGS``."""

    name: str
    default: str | None
    """The value when unset, written as in the app setting and parsed like one; None: the
    attribute is None when unset (unless the auth mode requires the setting)."""
    parse: Parser[T]
    doc: str
    """One line for a newcomer: what it is, its choices (README's table says more)."""

    @property
    def attribute(self) -> str:
        """The :class:`Settings` attribute this setting fills."""
        return self.name.removeprefix("DAEMON_").lower()

    def read(self, env: Mapping[str, str]) -> T | None:
        """The parsed value, the parsed default when unset or blank, or None."""
        value = p.get(env, self.name)
        if value is None:
            value = self.default
        return None if value is None else self.parse(self.name, value)


def _auth_mode(name: str, value: str) -> AuthMode:
    try:
        return AuthMode(value.lower())
    except ValueError as exc:
        choices = ", ".join(m.value for m in AuthMode)
        raise SettingError(
            name, f"{value!r} is not an auth mode: expected one of {choices}"
        ) from exc


S = Setting
_AUTH_MODE = S(
    "DAEMON_AUTH_MODE",
    None,
    _auth_mode,
    "managed-identity | keyvault-certificate | keyvault-signing | "
    "federated-managed-identity | client-secret",
)
# In the order they are read: a value that breaks two settings names the first one.
_TABLE: tuple[Setting[Any], ...] = (
    _AUTH_MODE,
    S("DAEMON_TENANT_ID", None, parse_tenant, "the home tenant (GUID or verified domain)"),
    S(
        "DAEMON_CLIENT_ID",
        None,
        p.guid,
        "the app registration's application (client) id; not for managed-identity",
    ),
    S(
        "DAEMON_ALLOWED_TENANTS",
        None,
        p.tenant_list,
        "comma-separated tenants the daemon may get tokens for (default: the home tenant only)",
    ),
    S("DAEMON_KEY_VAULT_URL", None, p.https_url, "https://<vault>.vault.azure.net; keyvault-*"),
    S(
        "DAEMON_CERTIFICATE_NAME",
        None,
        p.key_vault_object_name,
        "certificate name in the vault; keyvault-* modes",
    ),
    S(
        "DAEMON_MANAGED_IDENTITY_CLIENT_ID",
        None,
        p.guid,
        "client id of a user-assigned managed identity (empty: system-assigned)",
    ),
    S(
        "DAEMON_CLIENT_SECRET",
        None,
        p.text,
        "client-secret mode only; use a Key Vault reference",
    ),
    S(
        "DAEMON_API_BASE_URL",
        "https://graph.microsoft.com/v1.0",
        p.https_url,
        "https base URL of the web API (default Graph v1.0)",
    ),
    S(
        "DAEMON_API_SCOPE",
        "https://graph.microsoft.com/.default",
        p.scope,
        "static scope <resource>/.default (default Graph)",
    ),
    S(
        "DAEMON_AUTHORITY_HOST",
        PUBLIC_CLOUD_AUTHORITY,
        p.authority_host,
        "Entra ID authority (default public cloud)",
    ),
    S(
        "DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
        "true",
        p.boolean,
        "true | false; false only for emulators and private clouds",
    ),
    S(
        "DAEMON_SEND_X5C",
        "false",
        p.boolean,
        "true | false: send the certificate chain (x5c) for subject-name/issuer authentication",
    ),
    S(
        "DAEMON_CERTIFICATE_CHECK_SECONDS",
        "3600",
        p.positive_number(366 * 86400.0),
        "how often to look for a newer certificate version in Key Vault",
    ),
    S("DAEMON_JOBS_QUEUE", "daemon-jobs", p.queue_name, "the storage queue of job messages"),
    S(
        "DAEMON_SWEEP_SCHEDULE",
        "0 */15 * * * *",
        p.sweep_schedule,
        "NCRONTAB schedule of the sweep timer (default every 15 min)",
    ),
    S(
        "DAEMON_USER_DOMAIN",
        None,
        p.domain,
        "domain of the userPrincipalName of users the provision job creates",
    ),
    S(
        "DAEMON_OPERATIONS_ALLOWED_METHODS",
        "GET,PATCH",
        p.http_methods,
        "methods the operations job may send",
    ),
    S(
        "DAEMON_OPERATIONS_ALLOWED_PATHS",
        "/users/,/groups/",
        p.path_prefixes,
        "path prefixes the operations job may touch",
    ),
    S(
        "DAEMON_MAX_CHANGES_PER_RUN",
        "1000",
        p.positive_int(1_000_000),
        "safety limit: a run planning more changes aborts",
    ),
    S(
        "DAEMON_SWEEP_CHUNK_SIZE",
        "100",
        p.positive_int(1000),
        "leavers per queue message when the sweep fans out",
    ),
    S(
        "DAEMON_API_WRITES_PER_SECOND",
        "20",
        p.positive_number(100_000.0),
        "the API's write budget per app and tenant (Graph: 20)",
    ),
    S(
        "DAEMON_API_RESOURCE_UNITS_PER_SECOND",
        "350",
        p.positive_number(1_000_000.0),
        "the API's resource-unit budget per app and tenant (Graph: 350 for small tenants, "
        "800 above 500 users)",
    ),
    S(
        "DAEMON_API_HTTP2",
        "false",
        p.boolean,
        "true | false: use HTTP/2 with the API when it offers it",
    ),
    S(
        "DAEMON_API_THROTTLE_PRIORITY",
        None,
        p.throttle_priority,
        "Low | Normal | High: sent as x-ms-throttle-priority (unset: not sent)",
    ),
    S(
        "DAEMON_REPLICATION_RETRY_SECONDS",
        "60",
        p.positive_number(600.0),
        "how long a 'does not exist' answer about an object created in the same run is "
        "retried (Entra ID replication delay)",
    ),
    S(
        "DAEMON_FLEET_BUDGET",
        "true",
        p.boolean,
        "true | false: all instances share the write budget through Table storage on "
        "AzureWebJobsStorage (falls back to pacing alone when it fails)",
    ),
)
del S

SETTINGS: Mapping[str, Setting[Any]] = MappingProxyType({s.name: s for s in _TABLE})
"""Every app setting the daemon reads, by name, in the order they are read."""

# --- rules between settings -------------------------------------------------------------------

_ALL_MODES = frozenset(AuthMode)
# The settings each auth mode cannot work without: name -> the modes that require it.
_REQUIRED_IN: Mapping[str, frozenset[AuthMode]] = {
    "DAEMON_TENANT_ID": _ALL_MODES,
    "DAEMON_CLIENT_ID": _ALL_MODES - {AuthMode.MANAGED_IDENTITY},
    "DAEMON_KEY_VAULT_URL": KEY_VAULT_MODES,
    "DAEMON_CERTIFICATE_NAME": KEY_VAULT_MODES,
    "DAEMON_CLIENT_SECRET": frozenset({AuthMode.CLIENT_SECRET}),
}
# Read only in the modes that require them and None in the others: a certificate name the
# mode does not use is not even checked, and a secret the mode does not use is never kept.
_ONLY_WHERE_REQUIRED = frozenset({"DAEMON_CERTIFICATE_NAME", "DAEMON_CLIENT_SECRET"})
# The end of "is required ..." where "for DAEMON_AUTH_MODE=<mode>" does not say enough.
_WHY_REQUIRED = {
    "DAEMON_AUTH_MODE": "to choose how the daemon gets tokens",
    "DAEMON_TENANT_ID": "(the app's home tenant)",
    "DAEMON_CLIENT_SECRET": "for DAEMON_AUTH_MODE=client-secret (store it in Key Vault and use "
    "a Key Vault reference: @Microsoft.KeyVault(SecretUri=...))",
}


def _required(setting: Setting[T], env: Mapping[str, str], mode: AuthMode | None) -> T:
    """The setting's parsed value, or a SettingError saying why it must be set."""
    raw = p.get(env, setting.name)
    if raw is None:
        why = f"for DAEMON_AUTH_MODE={mode.value}" if mode else ""
        raise SettingError(setting.name, f"is required {_WHY_REQUIRED.get(setting.name, why)}")
    return setting.parse(setting.name, raw)


def _value_in_mode(setting: Setting[Any], env: Mapping[str, str], mode: AuthMode) -> Any:
    """The setting's value as ``mode`` sees it: required, ignored, or as set (or default)."""
    if mode in _REQUIRED_IN.get(setting.name, ()):
        return _required(setting, env, mode)
    if setting.name in _ONLY_WHERE_REQUIRED:
        return None
    return setting.read(env)


def _home_tenant_first(values: dict[str, Any]) -> None:
    """The home tenant is always allowed, first; DAEMON_ALLOWED_TENANTS adds others."""
    home = values["tenant_id"]
    others = values["allowed_tenants"] or ()
    values["allowed_tenants"] = (home, *(tenant for tenant in others if tenant != home))


def _managed_identity_stays_home(values: dict[str, Any]) -> None:
    if values["auth_mode"] is AuthMode.MANAGED_IDENTITY and len(values["allowed_tenants"]) > 1:
        raise SettingError(
            "DAEMON_ALLOWED_TENANTS",
            "a managed identity only gets tokens in its own tenant; use "
            "federated-managed-identity with a multi-tenant app registration instead",
        )


# Run right after the named setting is read (so the first bad setting is still the one named).
_RULES_AFTER: Mapping[str, tuple[Callable[[dict[str, Any]], None], ...]] = {
    "DAEMON_ALLOWED_TENANTS": (_home_tenant_first, _managed_identity_stays_home),
}


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse and validate the app settings; raise SettingError naming the first bad one."""
    mode = _required(_AUTH_MODE, env, None)  # first: the rules depend on it
    values: dict[str, Any] = {_AUTH_MODE.attribute: mode}
    for setting in _TABLE:
        if setting is _AUTH_MODE:
            continue
        values[setting.attribute] = _value_in_mode(setting, env, mode)
        for rule in _RULES_AFTER.get(setting.name, ()):
            rule(values)
    return Settings(**values)
