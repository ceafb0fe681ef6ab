"""App settings, parsed once into a frozen object.

The Functions host exposes app settings as environment variables; the daemon reads them
exactly once, through :func:`load_settings`, from a mapping passed in (``os.environ`` in
production, a plain dict in tests). Every error names the app setting and says what was
expected; secret values are never echoed.

The settings read here are exactly the ones in ``SETTINGS`` below; README's configuration
table and ``local.settings.sample.json`` list the same names (a test compares them).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ScheduleError, SettingError
from shared.host.schedule import parse_schedule

__all__ = [
    "PUBLIC_CLOUD_AUTHORITY",
    "SETTINGS",
    "AuthMode",
    "Settings",
    "SigningMode",
    "load_settings",
    "parse_tenant",
]

PUBLIC_CLOUD_AUTHORITY = "https://login.microsoftonline.com"

# Microsoft's own authority hosts: instance discovery works for these and stays on.
KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)

# Audience of the managed identity's token used as a federated client assertion, per cloud.
FEDERATION_AUDIENCES = {
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
    "login.partner.microsoftonline.cn": "api://AzureADTokenExchangeChina",
}
DEFAULT_FEDERATION_AUDIENCE = "api://AzureADTokenExchange"


class AuthMode(str, enum.Enum):
    """How the daemon proves its identity to Entra ID."""

    MANAGED_IDENTITY = "managed-identity"
    KEYVAULT_CERTIFICATE = "keyvault-certificate"
    KEYVAULT_SIGNING = "keyvault-signing"
    FEDERATED_MANAGED_IDENTITY = "federated-managed-identity"
    CLIENT_SECRET = "client-secret"  # noqa: S105 - a mode name, not a secret


class SigningMode(str, enum.Enum):
    """Where the client assertion of a certificate mode is signed."""

    EXPORT = "export"  # private key exported from Key Vault, assertion signed in memory
    IN_KEY_VAULT = "in-key-vault"  # Key Vault signs; the private key never leaves it


# name -> one-line description (README's configuration table is checked against this).
SETTINGS: dict[str, str] = {
    "DAEMON_AUTH_MODE": "managed-identity | keyvault-certificate | keyvault-signing | "
    "federated-managed-identity | client-secret",
    "DAEMON_TENANT_ID": "the home tenant (GUID or verified domain)",
    "DAEMON_CLIENT_ID": "the app registration's application (client) id; not for managed-identity",
    "DAEMON_ALLOWED_TENANTS": "comma-separated tenants the daemon may get tokens for "
    "(default: the home tenant only)",
    "DAEMON_KEY_VAULT_URL": "https://<vault>.vault.azure.net; keyvault-* modes",
    "DAEMON_CERTIFICATE_NAME": "certificate name in the vault; keyvault-* modes",
    "DAEMON_MANAGED_IDENTITY_CLIENT_ID": "client id of a user-assigned managed identity "
    "(empty: system-assigned)",
    "DAEMON_API_BASE_URL": "https base URL of the web API (default Graph v1.0)",
    "DAEMON_API_SCOPE": "static scope <resource>/.default (default Graph)",
    "DAEMON_AUTHORITY_HOST": "Entra ID authority (default public cloud)",
    "DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "true (default) | false; false only for "
    "emulators and private clouds",
    "DAEMON_CLIENT_SECRET": "client-secret mode only; use a Key Vault reference",
    "DAEMON_SEND_X5C": "true | false (default): send the certificate chain (x5c) for "
    "subject-name/issuer authentication",
    "DAEMON_CERTIFICATE_CHECK_SECONDS": "how often to look for a newer certificate version "
    "in Key Vault (default 3600)",
    "DAEMON_JOBS_QUEUE": "the storage queue of job messages (default daemon-jobs)",
    "DAEMON_SWEEP_SCHEDULE": "NCRONTAB schedule of the sweep timer (default every 15 min)",
    "DAEMON_USER_DOMAIN": "domain of the userPrincipalName of users the provision job creates",
    "DAEMON_MAX_CHANGES_PER_RUN": "safety limit: a run planning more changes aborts (default 1000)",
    "DAEMON_SWEEP_CHUNK_SIZE": "leavers per queue message when the sweep fans out (default 100)",
    "DAEMON_OPERATIONS_ALLOWED_METHODS": "methods the operations job may send (default GET,PATCH)",
    "DAEMON_OPERATIONS_ALLOWED_PATHS": "path prefixes the operations job may touch "
    "(default /users/,/groups/)",
    "DAEMON_API_WRITES_PER_SECOND": "the API's write budget per app and tenant (Graph: 20)",
    "DAEMON_API_RESOURCE_UNITS_PER_SECOND": "the API's resource-unit budget per app and tenant "
    "(Graph: 350 for small tenants, 800 above 500 users)",
    "DAEMON_API_HTTP2": "true | false (default): use HTTP/2 with the API when it offers it",
    "DAEMON_API_THROTTLE_PRIORITY": "Low | Normal | High: sent as x-ms-throttle-priority "
    "(default: not sent)",
    "DAEMON_REPLICATION_RETRY_SECONDS": "how long a 'does not exist' answer about an object "
    "created in the same run is retried (Entra ID replication delay; default 60)",
    "DAEMON_FLEET_BUDGET": "true (default) | false: all instances share the write budget "
    "through Table storage on AzureWebJobsStorage (falls back to pacing alone when it fails)",
}

DEFAULT_JOBS_QUEUE = "daemon-jobs"
DEFAULT_SWEEP_SCHEDULE = "0 */15 * * * *"
_QUEUE_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class Settings:
    """Everything the daemon reads from its app settings, validated."""

    auth_mode: AuthMode
    tenant_id: str
    client_id: str | None
    allowed_tenants: tuple[str, ...]
    key_vault_url: str | None
    certificate_name: str | None
    managed_identity_client_id: str | None
    api_base_url: str
    api_scope: str
    authority_host: str
    key_vault_verify_challenge_resource: bool
    client_secret: str | None
    send_x5c: bool
    certificate_check_seconds: float
    jobs_queue: str = DEFAULT_JOBS_QUEUE
    sweep_schedule: str = DEFAULT_SWEEP_SCHEDULE
    user_domain: str | None = None
    max_changes_per_run: int = 1000
    sweep_chunk_size: int = 100
    operations_allowed_methods: tuple[str, ...] = ("GET", "PATCH")
    operations_allowed_paths: tuple[str, ...] = ("/users/", "/groups/")
    api_writes_per_second: float = 20.0
    api_resource_units_per_second: float = 350.0
    api_http2: bool = False
    api_throttle_priority: str | None = None
    replication_retry_seconds: float = 60.0
    fleet_budget: bool = True

    def __repr__(self) -> str:  # never show the secret, even in a traceback's locals
        secret = "'***'" if self.client_secret else "None"
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__dataclass_fields__
            if name != "client_secret"
        )
        return f"Settings({fields}, client_secret={secret})"

    __str__ = __repr__

    @property
    def signing_mode(self) -> SigningMode | None:
        """Where the assertion is signed, for the certificate modes; else None."""
        if self.auth_mode is AuthMode.KEYVAULT_CERTIFICATE:
            return SigningMode.EXPORT
        if self.auth_mode is AuthMode.KEYVAULT_SIGNING:
            return SigningMode.IN_KEY_VAULT
        return None

    @property
    def api_resource(self) -> str:
        """The scope without its ``/.default`` suffix (what a managed identity asks for)."""
        return self.api_scope[: -len("/.default")]

    @property
    def api_host(self) -> str:
        return urlsplit(self.api_base_url).netloc.lower()

    @property
    def uses_key_vault(self) -> bool:
        return self.auth_mode in (AuthMode.KEYVAULT_CERTIFICATE, AuthMode.KEYVAULT_SIGNING)

    @property
    def instance_discovery(self) -> bool:
        """Instance discovery only works against Microsoft's own authority hosts."""
        return urlsplit(self.authority_host).hostname in KNOWN_AUTHORITY_HOSTS

    @property
    def federation_audience(self) -> str:
        host = urlsplit(self.authority_host).hostname or ""
        return FEDERATION_AUDIENCES.get(host, DEFAULT_FEDERATION_AUDIENCE)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _require(env: Mapping[str, str], name: str, why: str) -> str:
    value = _get(env, name)
    if value is None:
        raise SettingError(name, f"is required {why}")
    return value


def parse_tenant(name: str, value: str) -> str:
    candidate = value.strip().lower()
    try:
        return str(uuid.UUID(candidate))
    except ValueError:
        pass
    if _DOMAIN_RE.match(candidate):
        return candidate
    raise SettingError(
        name, f"{value!r} is not a tenant id: expected a GUID or a verified domain name"
    )


def _guid(name: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise SettingError(name, f"{value!r} is not a GUID (an application/client id)") from None


def _has_credentials(value: str) -> bool:
    """True when a URL-like value carries ``user[:password]@`` before its host.

    Looks at the raw text, not only at ``urlsplit``: ``user:pass@host`` without a scheme
    parses as scheme ``user`` and would otherwise be echoed in an error.
    """
    rest = value.split("://", 1)[-1]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return "@" in authority


def _refuse_credentials(name: str, value: str) -> None:
    if _has_credentials(value):
        raise SettingError(  # the value is not shown: it holds a user name and password
            name,
            "must not carry credentials (user:password@ in the URL; the value is not shown). "
            "Remove them: the daemon authenticates with its own identity, and a secret "
            "belongs in Key Vault",
        )


def _without_query(value: str) -> str:
    """The URL up to its path, for an error message (a query may hold a SAS signature)."""
    return re.split(r"[?#]", value, maxsplit=1)[0]


def _https_url(name: str, value: str) -> str:
    _refuse_credentials(name, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise SettingError(
            name, f"{_without_query(value)!r} is not a URL ({exc}); expected https://<host>"
        ) from None
    if parts.scheme != "https":
        raise SettingError(name, f"{_without_query(value)!r} must be an https:// URL")
    if not parts.hostname:
        raise SettingError(name, f"{_without_query(value)!r} has no host name")
    if parts.query or parts.fragment:
        raise SettingError(
            name,
            f"{_without_query(value)!r} must not carry a query or fragment (the part after "
            "'?' or '#' is not shown)",
        )
    return value.rstrip("/")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _get(env, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise SettingError(name, f"{value!r} is not a boolean: expected true or false")


def _positive_number(
    env: Mapping[str, str], name: str, default: float, maximum: float = 1_000_000.0
) -> float:
    value = _get(env, name)
    if value is None:
        return default
    if len(value) > 40:
        raise SettingError(name, f"{value[:40]!r}… is not a number (too long)")
    try:
        number = float(value)
    except ValueError:
        raise SettingError(name, f"{value!r} is not a number") from None
    if not math.isfinite(number):  # inf, nan, 1e999: arithmetic on them fails far away
        raise SettingError(name, f"{value!r} is not a finite number: expected a plain number")
    if not number > 0:
        raise SettingError(name, f"{value!r} must be greater than 0")
    if number > maximum:
        raise SettingError(name, f"{value!r} is implausibly large: at most {maximum:g}")
    return number


def _scope(name: str, value: str) -> str:
    _refuse_credentials(name, value)
    if " " in value.strip() or "," in value:
        raise SettingError(
            name,
            "must be exactly one static scope '<resource>/.default'; daemons cannot use "
            "incremental consent, so list the permissions on the app registration instead",
        )
    if not value.endswith("/.default"):
        raise SettingError(
            name,
            f"{value!r} is not a static scope: expected '<resource>/.default' such as "
            "'https://graph.microsoft.com/.default' (client credentials only accept "
            "/.default; grant app permissions at registration instead)",
        )
    resource = value[: -len("/.default")]
    if not resource:
        raise SettingError(name, f"{value!r} names no resource before '/.default'")
    if "://" in resource and urlsplit(resource).scheme not in ("https", "api"):
        raise SettingError(name, f"{value!r}: the resource must be https:// or api://")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    value = _get(env, name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 12) or not (
        1 <= int(value) <= maximum
    ):
        raise SettingError(name, f"{value!r} is not a whole number from 1 to {maximum}")
    return int(value)


def _job_settings(env: Mapping[str, str]) -> dict[str, object]:
    queue = _get(env, "DAEMON_JOBS_QUEUE") or DEFAULT_JOBS_QUEUE
    if not _QUEUE_RE.match(queue):
        raise SettingError(
            "DAEMON_JOBS_QUEUE",
            f"{queue!r} is not a storage queue name (3-63 lowercase letters, digits and "
            "single dashes, starting and ending with a letter or digit)",
        )
    schedule = _sweep_schedule(_get(env, "DAEMON_SWEEP_SCHEDULE") or DEFAULT_SWEEP_SCHEDULE)
    domain = _get(env, "DAEMON_USER_DOMAIN")
    if domain is not None and not _DOMAIN_RE.match(domain.lower()):
        raise SettingError("DAEMON_USER_DOMAIN", f"{domain!r} is not a domain name")
    methods = tuple(
        m.strip().upper()
        for m in (_get(env, "DAEMON_OPERATIONS_ALLOWED_METHODS") or "GET,PATCH").split(",")
        if m.strip()
    )
    for method in methods:
        if method not in {"GET", "POST", "PATCH", "PUT", "DELETE"}:
            raise SettingError(
                "DAEMON_OPERATIONS_ALLOWED_METHODS",
                f"{method!r} is not one of GET, POST, PATCH, PUT, DELETE",
            )
    paths = tuple(
        p.strip()
        for p in (_get(env, "DAEMON_OPERATIONS_ALLOWED_PATHS") or "/users/,/groups/").split(",")
        if p.strip()
    )
    for path in paths:
        if not path.startswith("/") or "://" in path or ".." in path:
            raise SettingError(
                "DAEMON_OPERATIONS_ALLOWED_PATHS",
                f"{path!r} must be a relative path prefix starting with '/' such as '/users/'",
            )
    return {
        "jobs_queue": queue,
        "sweep_schedule": schedule,
        "user_domain": domain.lower() if domain else None,
        "max_changes_per_run": _positive_int(env, "DAEMON_MAX_CHANGES_PER_RUN", 1000, 1_000_000),
        "sweep_chunk_size": _positive_int(env, "DAEMON_SWEEP_CHUNK_SIZE", 100, 1000),
        "operations_allowed_methods": methods,
        "operations_allowed_paths": paths,
        "api_writes_per_second": _positive_number(
            env, "DAEMON_API_WRITES_PER_SECOND", 20.0, 100_000.0
        ),
        "api_resource_units_per_second": _positive_number(
            env, "DAEMON_API_RESOURCE_UNITS_PER_SECOND", 350.0, 1_000_000.0
        ),
        "api_http2": _bool(env, "DAEMON_API_HTTP2", False),
        "api_throttle_priority": _throttle_priority(env),
        "replication_retry_seconds": _positive_number(
            env, "DAEMON_REPLICATION_RETRY_SECONDS", 60.0, 600.0
        ),
        "fleet_budget": _bool(env, "DAEMON_FLEET_BUDGET", True),
    }


def _sweep_schedule(value: str) -> str:
    """The timer's NCRONTAB, checked as the host checks it: six fields (with seconds) or five.

    NCRONTAB per https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer
    (#ncrontab-expressions). A ``hh:mm:ss`` TimeSpan is refused although the host takes it on
    a dedicated App Service plan: the same page says it works only there, and this app runs
    on Flex Consumption or Premium (the stricter choice). A schedule that never fires (such
    as 31 February) is refused too.
    """
    name = "DAEMON_SWEEP_SCHEDULE"
    if ":" in value and " " not in value.strip():
        raise SettingError(
            name,
            f"{value!r} is a TimeSpan, which the timer trigger accepts only on a dedicated App "
            "Service plan: use NCRONTAB such as '0 */15 * * * *'",
        )
    try:
        schedule = parse_schedule(value, key=name)
        schedule.next_after(dt.datetime.now(dt.timezone.utc))
    except ScheduleError as exc:
        raise SettingError(
            name,
            f"is not a schedule the Functions host accepts: {exc.where}: {exc.problem} "
            "(NCRONTAB: second minute hour day month day-of-week, such as '0 */15 * * * *')",
        ) from None
    return value


def _throttle_priority(env: Mapping[str, str]) -> str | None:
    value = _get(env, "DAEMON_API_THROTTLE_PRIORITY")
    if value is None:
        return None
    for choice in ("Low", "Normal", "High"):
        if value.lower() == choice.lower():
            return choice
    raise SettingError("DAEMON_API_THROTTLE_PRIORITY", f"{value!r} is not one of Low, Normal, High")


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse and validate the app settings; raise SettingError naming the first bad one."""
    raw_mode = _require(env, "DAEMON_AUTH_MODE", "to choose how the daemon gets tokens")
    try:
        mode = AuthMode(raw_mode.lower())
    except ValueError:
        choices = ", ".join(m.value for m in AuthMode)
        raise SettingError(
            "DAEMON_AUTH_MODE", f"{raw_mode!r} is not an auth mode: expected one of {choices}"
        ) from None

    tenant_id = parse_tenant(
        "DAEMON_TENANT_ID", _require(env, "DAEMON_TENANT_ID", "(the app's home tenant)")
    )

    client_id: str | None = None
    if mode is not AuthMode.MANAGED_IDENTITY:
        client_id = _guid(
            "DAEMON_CLIENT_ID",
            _require(env, "DAEMON_CLIENT_ID", f"for DAEMON_AUTH_MODE={mode.value}"),
        )
    elif _get(env, "DAEMON_CLIENT_ID") is not None:
        client_id = _guid("DAEMON_CLIENT_ID", _get(env, "DAEMON_CLIENT_ID") or "")

    allowed = [tenant_id]
    raw_allowed = _get(env, "DAEMON_ALLOWED_TENANTS")
    if raw_allowed:
        for item in raw_allowed.split(","):
            if not item.strip():
                continue
            tenant = parse_tenant("DAEMON_ALLOWED_TENANTS", item)
            if tenant not in allowed:
                allowed.append(tenant)
    if mode is AuthMode.MANAGED_IDENTITY and len(allowed) > 1:
        raise SettingError(
            "DAEMON_ALLOWED_TENANTS",
            "a managed identity only gets tokens in its own tenant; use "
            "federated-managed-identity with a multi-tenant app registration instead",
        )

    key_vault_url: str | None = None
    certificate_name: str | None = None
    if mode in (AuthMode.KEYVAULT_CERTIFICATE, AuthMode.KEYVAULT_SIGNING):
        why = f"for DAEMON_AUTH_MODE={mode.value}"
        key_vault_url = _https_url(
            "DAEMON_KEY_VAULT_URL", _require(env, "DAEMON_KEY_VAULT_URL", why)
        )
        certificate_name = _require(env, "DAEMON_CERTIFICATE_NAME", why)
        if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", certificate_name):
            raise SettingError(
                "DAEMON_CERTIFICATE_NAME",
                f"{certificate_name!r} is not a Key Vault object name "
                "(1-127 letters, digits and dashes)",
            )
    elif _get(env, "DAEMON_KEY_VAULT_URL") is not None:
        key_vault_url = _https_url("DAEMON_KEY_VAULT_URL", _get(env, "DAEMON_KEY_VAULT_URL") or "")

    mi_client_id = _get(env, "DAEMON_MANAGED_IDENTITY_CLIENT_ID")
    if mi_client_id is not None:
        mi_client_id = _guid("DAEMON_MANAGED_IDENTITY_CLIENT_ID", mi_client_id)

    client_secret = _get(env, "DAEMON_CLIENT_SECRET")
    if mode is AuthMode.CLIENT_SECRET and client_secret is None:
        raise SettingError(
            "DAEMON_CLIENT_SECRET",
            "is required for DAEMON_AUTH_MODE=client-secret (store it in Key Vault and use a "
            "Key Vault reference: @Microsoft.KeyVault(SecretUri=...))",
        )
    if mode is not AuthMode.CLIENT_SECRET:
        client_secret = None  # never keep a secret the mode does not use

    api_base_url = _https_url(
        "DAEMON_API_BASE_URL",
        _get(env, "DAEMON_API_BASE_URL") or "https://graph.microsoft.com/v1.0",
    )
    api_scope = _scope(
        "DAEMON_API_SCOPE", _get(env, "DAEMON_API_SCOPE") or "https://graph.microsoft.com/.default"
    )
    authority_host = _https_url(
        "DAEMON_AUTHORITY_HOST", _get(env, "DAEMON_AUTHORITY_HOST") or PUBLIC_CLOUD_AUTHORITY
    )
    if urlsplit(authority_host).path not in ("", "/"):
        raise SettingError(
            "DAEMON_AUTHORITY_HOST",
            f"{authority_host!r} must be a host only (such as {PUBLIC_CLOUD_AUTHORITY}); the "
            "tenant comes from DAEMON_TENANT_ID",
        )

    return Settings(
        auth_mode=mode,
        tenant_id=tenant_id,
        client_id=client_id,
        allowed_tenants=tuple(allowed),
        key_vault_url=key_vault_url,
        certificate_name=certificate_name,
        managed_identity_client_id=mi_client_id,
        api_base_url=api_base_url,
        api_scope=api_scope,
        authority_host=authority_host,
        key_vault_verify_challenge_resource=_bool(
            env, "DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", True
        ),
        client_secret=client_secret,
        send_x5c=_bool(env, "DAEMON_SEND_X5C", False),
        certificate_check_seconds=_positive_number(
            env, "DAEMON_CERTIFICATE_CHECK_SECONDS", 3600.0, 366 * 86400.0
        ),
        **_job_settings(env),  # type: ignore[arg-type]
    )
