"""The provision payload's people, validated one by one, and their userPrincipalNames.

A bad person becomes a *problem* naming the person and the field; everyone else goes on.
Only the payload's shape (not a list, too many people, unknown fields) makes the whole
message invalid. The identity rules (employeeId compared case-insensitively, the UPN's
injective last segment) are in the package docstring, :mod:`shared.jobs.provision`.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import InvalidMessageError, PersonError, SettingError

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_LIMITS",
    "Kind",
    "Person",
    "Validated",
    "user_principal_name",
    "validate_payload",
    "validate_person",
]

Kind = Literal["joiner", "mover", "leaver"]

# Maximum lengths from the user resource page
# (https://learn.microsoft.com/graph/api/resources/user, "Properties"). The docs do not say
# whether "characters" are code points or UTF-16 code units; we count UTF-16 code units,
# the stricter of the two (an astral character counts twice).
ATTRIBUTE_LIMITS: Mapping[str, int] = {
    "displayName": 256,
    "givenName": 64,
    "surname": 64,
    "department": 64,
    "jobTitle": 128,
    "officeLocation": 128,
}
ATTRIBUTES = tuple(ATTRIBUTE_LIMITS)
# "employeeId … The maximum length is 16 characters." (user resource page); the character
# set is ours: what HR systems use, safe in an OData literal and encodable in a UPN.
_EMPLOYEE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,16}$")
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_FIELDS: Mapping[str, frozenset[str]] = {
    "joiner": frozenset({"employeeId", "groups", *ATTRIBUTES}),
    "mover": frozenset({"employeeId", "groups", "removeGroups", *ATTRIBUTES}),
    "leaver": frozenset({"employeeId", "id"}),
}
_MAX_PEOPLE = 200  # per message: keeps one run well inside functionTimeout
_MAX_GROUPS = 100  # per person and list
# UPN rules (user resource page, userPrincipalName): only A-Z a-z 0-9 ' . - _ ! # ^ ~ in the
# alias, no leading, trailing or consecutive dots, the alias at most 64 characters
# (https://learn.microsoft.com/entra/identity/authentication/concept-sspr-policy
# #userprincipalname-policies-that-apply-to-all-user-accounts).
_UPN_LOCAL_MAX = 64


@dataclass(frozen=True)
class Person:
    """A validated person. ``attributes`` maps a name to its wanted value; ``None`` means
    "clear it" (movers) or "leave it out" (a joiner's create)."""

    kind: Kind
    index: int  # position in the payload (0-based, over joiners, movers, leavers)
    employee_id: str | None = None
    object_id: str | None = None
    attributes: Mapping[str, str | None] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    remove_groups: tuple[str, ...] = ()
    upn: str | None = None  # joiners

    @property
    def key(self) -> str:
        return self.employee_id or self.object_id or f"#{self.index + 1}"

    @property
    def where(self) -> str:
        return f"{self.kind} {self.key}"


@dataclass
class Validated:
    people: list[Person] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _show(value: Any, limit: int = 40) -> str:
    """A short, log-safe rendering of an input value (repr escapes controls/surrogates)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent to Graph as a string, or None."""
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cs":
            return f"contains a lone surrogate (U+{ord(ch):04X})"
        if category == "Cc":
            return f"contains a control character (U+{ord(ch):04X})"
        if category == "Cn" and (ord(ch) & 0xFFFE) == 0xFFFE:
            return f"contains a noncharacter (U+{ord(ch):04X})"
    return None


def _utf16_length(value: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in value)


def _attribute(name: str, raw: Any, where: str) -> str | None:
    """The normalised value of one attribute: NFC, surrounding whitespace removed; an empty
    value is None ("clear it"). Raises PersonError naming the person and the field."""
    if raw is None:
        value = ""
    elif isinstance(raw, str):
        problem = _text_problem(raw)
        if problem:
            raise PersonError(f"{where}: '{name}' {problem}")
        value = unicodedata.normalize("NFC", raw).strip()
    else:
        raise PersonError(
            f"{where}: '{name}' must be a string, not {type(raw).__name__} {_show(raw)}"
        )
    if not value:
        if name == "displayName":
            # "it cannot be cleared during updates" (Update user page)
            raise PersonError(f"{where}: 'displayName' must not be empty (Graph cannot clear it)")
        return None
    limit = ATTRIBUTE_LIMITS[name]
    if _utf16_length(value) > limit:
        raise PersonError(
            f"{where}: '{name}' is {_utf16_length(value)} characters, more than Graph's "
            f"limit of {limit}"
        )
    return value


def _group_list(person: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = person.get(key, [])
    if not isinstance(value, list):
        raise PersonError(f"{where}: '{key}' must be a list of group object ids")
    if len(value) > _MAX_GROUPS:
        raise PersonError(f"{where}: '{key}' has more than {_MAX_GROUPS} groups")
    for item in value:
        if not isinstance(item, str) or not _GUID_RE.match(item):
            raise PersonError(f"{where}: '{key}' has {_show(item)}, not a group object id")
    return tuple(dict.fromkeys(g.lower() for g in value))


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


def _encode_employee_id(employee_id: str) -> str:
    """Injective over case-folded employee ids: [a-z0-9-] kept, ``_`` → ``_u``, ``.`` →
    ``_d`` (``_`` always starts an escape, so decoding is unique; no dot is ever produced)."""
    out = []
    for ch in employee_id.lower():
        out.append("_u" if ch == "_" else "_d" if ch == "." else ch)
    return "".join(out)


def user_principal_name(person: Mapping[str, Any], domain: str) -> str:
    """``given.surname.<encoded employee id>@domain``, lower case ASCII, at most 64
    characters before the ``@``: the same input, the same UPN; different employee ids
    (compared case-insensitively), different UPNs — the last segment alone decides."""
    employee_id = str(person["employeeId"])
    suffix = _encode_employee_id(employee_id)
    parts = [
        _ascii_slug(str(person.get("givenName") or "")),
        _ascii_slug(str(person.get("surname") or "")),
    ]
    name = ".".join(p for p in parts if p) or "user"
    room = _UPN_LOCAL_MAX - len(suffix) - 1
    name = name[:room].strip(".")
    return f"{name}.{suffix}@{domain}"


def validate_person(kind: Kind, index: int, raw: Any, domain: str | None) -> Person:
    """One person from the payload, validated; PersonError names the person and field."""
    where = f"{kind} #{index + 1}"
    if not isinstance(raw, Mapping):
        raise PersonError(f"{where}: must be an object, not {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in _FIELDS[kind])
    if unknown:
        raise PersonError(f"{where}: unknown field(s) {', '.join(_show(k) for k in unknown)}")
    if kind == "leaver" and "id" in raw:
        if "employeeId" in raw:
            raise PersonError(f"{where}: give 'id' or 'employeeId', not both")
        object_id = raw["id"]
        if not isinstance(object_id, str) or not _GUID_RE.match(object_id):
            raise PersonError(f"{where}: 'id' {_show(object_id)} is not a user object id")
        return Person(kind, index, object_id=object_id.lower())
    employee_id = raw.get("employeeId")
    if not isinstance(employee_id, str) or not _EMPLOYEE_ID_RE.match(employee_id):
        raise PersonError(
            f"{where}: 'employeeId' {_show(employee_id)} must be 1-16 letters, digits, "
            "'.', '_' or '-'"
        )
    where = f"{kind} {employee_id}"
    if kind == "leaver":
        return Person(kind, index, employee_id=employee_id)
    attributes = {name: _attribute(name, raw[name], where) for name in ATTRIBUTES if name in raw}
    groups = _group_list(raw, "groups", where)
    remove = _group_list(raw, "removeGroups", where)
    both = sorted(set(groups) & set(remove))
    if both:
        raise PersonError(
            f"{where}: group(s) {', '.join(both)} in both 'groups' and 'removeGroups'"
        )
    upn = None
    if kind == "joiner":
        if not (attributes.get("givenName") or attributes.get("surname")):
            raise PersonError(f"{where}: 'givenName' or 'surname' is required")
        if domain is None:
            raise SettingError("DAEMON_USER_DOMAIN", "is required to create users (joiners)")
        upn = user_principal_name(
            {"employeeId": employee_id, **{k: v for k, v in attributes.items() if v}}, domain
        )
    return Person(kind, index, employee_id, None, attributes, groups, remove, upn)


def _people(payload: Mapping[str, Any], key: str) -> list[Any]:
    value = payload.get(key, [])
    if not isinstance(value, list):
        raise InvalidMessageError(f"payload '{key}' must be a list of people")
    return value


def validate_payload(payload: Mapping[str, Any], *, domain: str | None) -> Validated:
    """Every person validated on its own; InvalidMessageError only for the payload's shape.

    Raises SettingError when joiners are present and DAEMON_USER_DOMAIN is not set (a
    setting can be fixed; the message is then retried)."""
    unknown = set(payload) - {"joiners", "movers", "leavers"}
    if unknown:
        raise InvalidMessageError(
            f"unknown payload fields: {', '.join(sorted(_show(str(k)) for k in unknown))}"
        )
    groups: list[tuple[Kind, list[Any]]] = [
        ("joiner", _people(payload, "joiners")),
        ("mover", _people(payload, "movers")),
        ("leaver", _people(payload, "leavers")),
    ]
    total = sum(len(people) for _, people in groups)
    if total > _MAX_PEOPLE:
        raise InvalidMessageError(
            f"{total} people in one message, more than {_MAX_PEOPLE}: split it"
        )
    out = Validated()
    index = 0
    for kind, people in groups:
        for position, raw in enumerate(people):
            try:
                person = validate_person(kind, position, raw, domain)
            except PersonError as exc:
                out.problems.append(str(exc))
            else:
                out.people.append(dataclasses.replace(person, index=index))
            index += 1
    # the same person twice (two joiners, a mover and a leaver…): which entry is right is
    # unknown, so none of them is planned
    by_identity: dict[str, list[Person]] = {}
    for person in out.people:
        by_identity.setdefault(person.key.casefold(), []).append(person)
    for same in by_identity.values():
        if len(same) > 1:
            out.problems.append(
                f"{same[0].where}: appears {len(same)} times in this message (as "
                f"{', '.join(p.kind for p in same)}); none of them is planned"
            )
    out.people = [p for p in out.people if len(by_identity[p.key.casefold()]) == 1]
    return out
