"""The parsers of app-setting values: text in, a typed value out, or a SettingError.

Every parser has the signature ``parse(name, value) -> T``: ``name`` is the app setting (each
error names it), ``value`` is already stripped and non-empty (``shared.settings`` treats an
empty setting as unset). Errors say what was expected and never echo a value that may hold a
credential (``user:password@`` in a URL, a query that may carry a SAS signature).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from shared.errors import ScheduleError, SettingError
from shared.host.schedule import parse_schedule

__all__ = [
    "PUBLIC_CLOUD_AUTHORITY",
    "QUEUE_NAME_RE",
    "Parser",
    "authority_host",
    "boolean",
    "domain",
    "get",
    "guid",
    "http_methods",
    "https_url",
    "key_vault_object_name",
    "parse_tenant",
    "path_prefixes",
    "positive_int",
    "positive_number",
    "queue_name",
    "scope",
    "sweep_schedule",
    "tenant_list",
    "text",
    "throttle_priority",
]

T = TypeVar("T")
Parser = Callable[[str, str], T]
"""``parse(setting name, stripped non-empty value) -> typed value``; raises SettingError."""

PUBLIC_CLOUD_AUTHORITY = "https://login.microsoftonline.com"
# A storage queue name: 3-63 lowercase letters, digits and single dashes, letter/digit at ends.
QUEUE_NAME_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
_PRIORITIES = ("Low", "Normal", "High")


def get(env: Mapping[str, str], name: str) -> str | None:
    """The setting's value without surrounding blanks; None when unset or blank."""
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def text(name: str, value: str) -> str:
    """Any text, kept as is (a client secret: never echoed by anything here)."""
    return value


def parse_tenant(name: str, value: str) -> str:
    """A tenant: a GUID (normalized) or a verified domain name (lowercased)."""
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


def tenant_list(name: str, value: str) -> tuple[str, ...]:
    """Comma-separated tenants, each parsed, without duplicates, in the order given."""
    tenants = (parse_tenant(name, item) for item in value.split(",") if item.strip())
    return tuple(dict.fromkeys(tenants))


def guid(name: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise SettingError(name, f"{value!r} is not a GUID (an application/client id)") from exc


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


def https_url(name: str, value: str) -> str:
    """An https URL with a host and no credentials, query or fragment; no trailing slash."""
    _refuse_credentials(name, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:  # credentials were refused above: the error holds none
        raise SettingError(
            name, f"{_without_query(value)!r} is not a URL ({exc}); expected https://<host>"
        ) from exc
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


def authority_host(name: str, value: str) -> str:
    """The Entra ID authority: an https URL of a host only (the tenant is another setting)."""
    url = https_url(name, value)
    if urlsplit(url).path not in ("", "/"):
        raise SettingError(
            name,
            f"{url!r} must be a host only (such as {PUBLIC_CLOUD_AUTHORITY}); the tenant comes "
            "from DAEMON_TENANT_ID",
        )
    return url


def scope(name: str, value: str) -> str:
    """Exactly one static scope ``<resource>/.default`` (client credentials accept no other)."""
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


def boolean(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise SettingError(name, f"{value!r} is not a boolean: expected true or false")


def positive_number(maximum: float) -> Parser[float]:
    """A parser of a finite number greater than 0 and at most ``maximum``."""

    def parse(name: str, value: str) -> float:
        if len(value) > 40:
            raise SettingError(name, f"{value[:40]!r}… is not a number (too long)")
        try:
            number = float(value)
        except ValueError as exc:
            raise SettingError(name, f"{value!r} is not a number") from exc
        if not math.isfinite(number):  # inf, nan, 1e999: arithmetic on them fails far away
            raise SettingError(name, f"{value!r} is not a finite number: expected a plain number")
        if not number > 0:
            raise SettingError(name, f"{value!r} must be greater than 0")
        if number > maximum:
            raise SettingError(name, f"{value!r} is implausibly large: at most {maximum:g}")
        return number

    return parse


def positive_int(maximum: int) -> Parser[int]:
    """A parser of a whole number (ASCII digits) from 1 to ``maximum``."""

    def parse(name: str, value: str) -> int:
        if not (value.isascii() and value.isdigit() and len(value) <= 12) or not (
            1 <= int(value) <= maximum
        ):
            raise SettingError(name, f"{value!r} is not a whole number from 1 to {maximum}")
        return int(value)

    return parse


def key_vault_object_name(name: str, value: str) -> str:
    if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", value):
        raise SettingError(
            name, f"{value!r} is not a Key Vault object name (1-127 letters, digits and dashes)"
        )
    return value


def queue_name(name: str, value: str) -> str:
    if not QUEUE_NAME_RE.match(value):
        raise SettingError(
            name,
            f"{value!r} is not a storage queue name (3-63 lowercase letters, digits and "
            "single dashes, starting and ending with a letter or digit)",
        )
    return value


def sweep_schedule(name: str, value: str) -> str:
    """The timer's NCRONTAB, checked as the host checks it: six fields (with seconds) or five.

    NCRONTAB per https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer
    (#ncrontab-expressions). A ``hh:mm:ss`` TimeSpan is refused although the host takes it on
    a dedicated App Service plan: the same page says it works only there, and this app runs
    on Flex Consumption or Premium (the stricter choice). A schedule that never fires (such
    as 31 February) is refused too.
    """
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
        ) from exc
    return value


def domain(name: str, value: str) -> str:
    """A DNS domain name, lowercased."""
    if not _DOMAIN_RE.match(value.lower()):
        raise SettingError(name, f"{value!r} is not a domain name")
    return value.lower()


def http_methods(name: str, value: str) -> tuple[str, ...]:
    """Comma-separated HTTP methods, uppercased, each one the API jobs may send."""
    methods = tuple(m.strip().upper() for m in value.split(",") if m.strip())
    for method in methods:
        if method not in _METHODS:
            raise SettingError(name, f"{method!r} is not one of {', '.join(_METHODS)}")
    return methods


def path_prefixes(name: str, value: str) -> tuple[str, ...]:
    """Comma-separated relative path prefixes such as ``/users/``."""
    paths = tuple(p.strip() for p in value.split(",") if p.strip())
    for path in paths:
        if not path.startswith("/") or "://" in path or ".." in path:
            raise SettingError(
                name, f"{path!r} must be a relative path prefix starting with '/' such as '/users/'"
            )
    return paths


def throttle_priority(name: str, value: str) -> str:
    """Low, Normal or High (any case), spelled as Graph's ``x-ms-throttle-priority`` takes it."""
    for choice in _PRIORITIES:
        if value.lower() == choice.lower():
            return choice
    raise SettingError(name, f"{value!r} is not one of {', '.join(_PRIORITIES)}")
