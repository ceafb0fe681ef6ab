"""Property rules of ``POST /users`` and of object references, as Entra ID applies them.

- userPrincipalName: ``alias@domain`` where the domain is one of the tenant's verified
  domains and the alias uses only ``A-Z a-z 0-9 ' . - _ ! # ^ ~``, does not start or end with
  a period, has no two periods in a row and is at most 64 characters (userPrincipalName in
  https://learn.microsoft.com/graph/api/resources/user; "Create user",
  https://learn.microsoft.com/graph/api/user-post-users). Accented letters are refused.
- passwordProfile.password: the default policy of Microsoft Entra ID, 8 to 256 characters
  from ``A-Z a-z 0-9`` and the listed symbols (blank space included, Unicode refused), with
  three of the four classes lower case, upper case, digit, symbol
  (https://learn.microsoft.com/entra/identity/authentication/concept-password-policies).
- ``@odata.id`` / ``@odata.bind`` references: an absolute URL on the API's own host and
  version, ``{api base}/directoryObjects/{id}``, ``/users/{id}`` or ``/groups/{id}``
  (https://learn.microsoft.com/graph/api/group-post-members,
  https://learn.microsoft.com/graph/api/group-update). The docs show only such URLs; a
  reference to another host or version is refused (the stricter reading).
"""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

from .errors import GraphError, bad_request

__all__ = [
    "PASSWORD_SYMBOLS",
    "UPN_ALIAS_CHARACTERS",
    "check_password",
    "check_upn",
    "reference_id",
]

UPN_ALIAS_CHARACTERS = frozenset(string.ascii_letters + string.digits + "'.-_!#^~")
UPN_ALIAS_MAX = 64
PASSWORD_SYMBOLS = frozenset("@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<> ")
PASSWORD_MIN, PASSWORD_MAX = 8, 256
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
REFERENCE_SETS = {"directoryobjects": "directoryObjects", "users": "users", "groups": "groups"}


def invalid_upn() -> GraphError:
    return GraphError(
        400,
        "Request_BadRequest",
        "Property userPrincipalName is invalid.",
        details=[{"code": "InvalidValue", "target": "userPrincipalName"}],
    )


def check_upn(upn: object, verified_domains: set[str] | frozenset[str]) -> str:
    """Return ``upn`` if Entra ID would accept it for a new user, else raise its 400."""
    if not isinstance(upn, str) or upn.count("@") != 1:
        raise invalid_upn()
    alias, domain = upn.split("@")
    if (
        not alias
        or len(alias) > UPN_ALIAS_MAX
        or any(ch not in UPN_ALIAS_CHARACTERS for ch in alias)
        or alias.startswith(".")
        or alias.endswith(".")
        or ".." in alias
    ):
        raise invalid_upn()
    if domain.lower() not in verified_domains:
        raise GraphError(
            400,
            "Request_BadRequest",
            "The domain portion of the userPrincipalName property is invalid. You must use one "
            "of the verified domain names in your organization.",
            details=[{"code": "InvalidValue", "target": "userPrincipalName"}],
        )
    return upn


def check_password(password: object) -> None:
    """Raise Graph's 400 unless ``password`` meets Entra ID's default password policy."""
    ok = isinstance(password, str) and PASSWORD_MIN <= len(password) <= PASSWORD_MAX
    if ok:
        assert isinstance(password, str)
        allowed = all(ch in PASSWORD_SYMBOLS or (ch.isascii() and ch.isalnum()) for ch in password)
        classes = (
            any(ch.islower() for ch in password)
            + any(ch.isupper() for ch in password)
            + any(ch.isdigit() for ch in password)
            + any(ch in PASSWORD_SYMBOLS for ch in password)
        )
        ok = allowed and classes >= 3
    if not ok:
        # Graph's message; the "PasswordPolicy" detail code is ours (the docs show none).
        raise GraphError(
            400,
            "Request_BadRequest",
            "The specified password does not comply with password complexity requirements. "
            "Please provide a different password.",
            details=[{"code": "PasswordPolicy", "target": "passwordProfile.password"}],
        )


def reference_id(ref: object, api_base: str, property_name: str) -> tuple[str, str]:
    """``(entity set, key)`` of an ``@odata.id``/``@odata.bind`` URL on ``api_base``.

    ``api_base`` is ``scheme://host[:port]/v1.0`` as the client reached the API.
    """
    if not isinstance(ref, str) or not ref:
        raise bad_request(f"Invalid URL format specified in {property_name}.")
    base = urlsplit(api_base)
    got = urlsplit(ref)
    prefix = base.path.rstrip("/")
    path = got.path
    if (
        got.scheme.lower() != base.scheme.lower()
        or got.netloc.lower() != base.netloc.lower()
        or not path.startswith(prefix + "/")
        or got.query
        or got.fragment
    ):
        raise bad_request(
            f"Invalid URL format specified in {property_name}: '{ref}' is not a URL of this "
            f"API ({api_base}/directoryObjects/{{id}})."
        )
    segments = path[len(prefix) + 1 :].split("/")
    if len(segments) != 2 or segments[0].lower() not in REFERENCE_SETS or not segments[1]:
        raise bad_request(
            f"Invalid URL format specified in {property_name}: '{ref}' must name "
            "directoryObjects/{id}, users/{id} or groups/{id}."
        )
    if not _GUID.fullmatch(segments[1]):
        # The Add members and group-update pages reference members by object id only
        # (".../directoryObjects/{id}"); whether Graph also resolves a userPrincipalName
        # there is not documented, so the stricter reading: an id or nothing.
        raise bad_request(f"Invalid object identifier '{segments[1]}'.")
    return REFERENCE_SETS[segments[0].lower()], segments[1]
