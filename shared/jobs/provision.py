"""``provision``: joiners, movers and leavers.

Payload::

    {"joiners": [{"employeeId": "E1", "givenName": "Ada", "surname": "Lovelace",
                  "department": "R&D", "jobTitle": "Engineer", "groups": ["<group id>"]}],
     "movers":  [{"employeeId": "E2", "department": "Sales", "groups": [...],
                  "removeGroups": [...]}],
     "leavers": [{"employeeId": "E3"} | {"id": "<user object id>"}]}

A run has three steps, each a named function:

1. :func:`validate_payload` checks every person on its own (types, characters, Graph's
   length limits, group ids); a bad person becomes a *problem* naming the person and the
   field, and everyone else goes on.
2. :func:`read_current_state` reads each person's account(s) from the directory. A read that
   failed (5xx, transport, throttled past the bound, token or permission) raises
   :class:`RetryableJobError`: nothing is applied and the message is redelivered. A 404 or
   an empty result is an answer ("no such user"), not a failure.
3. :func:`plan_person` (:func:`plan_joiner`, :func:`plan_mover`, :func:`plan_leaver`) turns a
   person and the state read into operations — pure functions, no I/O.

Redelivery changes nothing: the plan compares with the directory's state, the way Graph
stores values (an empty optional attribute means "clear it" and is stored as null; an empty
``displayName`` is refused, as Graph refuses it), a joiner that exists is treated as a
mover, a disabled and signed-out leaver is skipped, a member already in a group is not added
again.

Identity rules:

- ``employeeId`` is compared case-insensitively, as the directory's ``$filter`` does.
- The userPrincipalName is ``given.surname.<employee id>@DAEMON_USER_DOMAIN`` where the last
  segment encodes the (case-folded) employee id injectively: letters and digits as they
  are, ``-`` kept, ``_`` → ``_u``, ``.`` → ``_d``. Two employee ids never give the same UPN
  ("FZ-77" → ``…​.fz-77@``, "fz77" → ``…​.fz77@``). Before a create the UPN itself is read: an
  account holding it with another employeeId is a problem for that joiner (never a silent
  failure), one with the same employeeId is that joiner (a lagging ``$filter`` index).
- Every account matching a leaver's employeeId is disabled and signed out; more than one
  account matching a joiner's or mover's employeeId is a problem (which one to change is
  ambiguous).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import (
    ApiError,
    CredentialError,
    InvalidMessageError,
    PersonError,
    RetryableJobError,
    SettingError,
)
from shared.jobs.base import JobContext, Plan
from shared.webapi import CreateIdentity, EngineReport, Operation, Outcome, Result
from shared.webapi.urls import directory_object_url, user_url

__all__ = [
    "ATTRIBUTE_LIMITS",
    "CurrentState",
    "Person",
    "PersonPlan",
    "ProvisionJob",
    "Validated",
    "interpret_reads",
    "plan_joiner",
    "plan_leaver",
    "plan_mover",
    "plan_person",
    "read_current_state",
    "read_operations",
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
_SELECT = "id,userPrincipalName,employeeId,accountEnabled," + ",".join(ATTRIBUTES)
_EXPAND = "memberOf($select=id)"
# "$expand typically returns a maximum of 20 items for the expanded relationship and has no
# @odata.nextLink" (https://learn.microsoft.com/graph/query-parameters#expand-parameter):
# an expanded memberOf this long may be cut short, so it is read again in full.
EXPAND_LIMIT = 20
# UPN rules (user resource page, userPrincipalName): only A-Z a-z 0-9 ' . - _ ! # ^ ~ in the
# alias, no leading, trailing or consecutive dots, the alias at most 64 characters
# (https://learn.microsoft.com/entra/identity/authentication/concept-sspr-policy
# #userprincipalname-policies-that-apply-to-all-user-accounts).
_UPN_LOCAL_MAX = 64
_JSON = {"Content-Type": "application/json"}


# -- 1. validation ----------------------------------------------------------------------------


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


# -- 2. reading the directory -------------------------------------------------------------


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


def _read_id(person: Person, what: str) -> str:
    return f"read-{person.index}-{what}"


def read_operations(people: Iterable[Person]) -> list[Operation]:
    """The GETs that show each person's current state (batched by the engine)."""
    reads: list[Operation] = []
    for person in people:
        if person.object_id is not None:
            reads.append(
                Operation(
                    _read_id(person, "id"),
                    "GET",
                    f"/users/{person.object_id}?$select={_SELECT}",
                )
            )
            continue
        assert person.employee_id is not None
        reads.append(
            Operation(
                _read_id(person, "eid"),
                "GET",
                f"/users?$filter=employeeId eq '{_odata_quote(person.employee_id)}'"
                f"&$select={_SELECT}&$expand={_EXPAND}",
            )
        )
        if person.upn is not None:
            reads.append(
                Operation(
                    _read_id(person, "upn"),
                    "GET",
                    f"/users/{person.upn}?$select={_SELECT}&$expand={_EXPAND}",
                )
            )
    return reads


@dataclass
class CurrentState:
    """What the directory holds for the people of one message."""

    accounts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by index
    upn_owner: dict[int, dict[str, Any] | None] = field(default_factory=dict)  # joiners
    revoked: set[str] = field(default_factory=set)  # user ids signed out by an earlier run


def _retryable_read(result: Result) -> bool:
    """A read that may succeed later. 404 is an answer; 400 (and other 4xx but 401, 403,
    408, 429) is the API refusing this read for good."""
    if result.outcome is Outcome.SUCCEEDED:
        return False
    status = result.status
    if status is None or result.outcome is Outcome.GAVE_UP:
        return True
    return status in (401, 403, 408, 429) or status >= 500


def interpret_reads(
    people: Sequence[Person], results: Iterable[Result]
) -> tuple[CurrentState, list[str]]:
    """Turn the read results into state and per-person problems (pure).

    Raises RetryableJobError when any read failed in a way that may succeed later."""
    by_id = {r.operation_id: r for r in results}
    state, problems = CurrentState(), []
    retry: list[str] = []
    for person in people:
        what = "id" if person.object_id is not None else "eid"
        result = by_id.get(_read_id(person, what))
        upn_result = by_id.get(_read_id(person, "upn")) if person.upn else None
        if result is None or (person.upn is not None and upn_result is None):
            retry.append(f"{person.where}: no result for its read")
        for one in (result, upn_result):
            if one is not None and _retryable_read(one):
                retry.append(f"{person.where}: {one.error or f'HTTP {one.status}'}")
        if retry:
            continue  # raised below; nothing is planned from a partial read
        assert result is not None
        problem = _read_problem(person, result) or (
            _read_problem(person, upn_result) if upn_result is not None else None
        )
        if problem:
            problems.append(problem)
            continue
        accounts = _accounts(result)
        if accounts is None:
            problems.append(
                f"{person.where}: more accounts than one page share this employeeId; "
                "resolve the duplicates"
            )
            continue
        state.accounts[person.index] = accounts
        if upn_result is not None:
            owner = _accounts(upn_result)
            state.upn_owner[person.index] = owner[0] if owner else None
    if retry:
        raise RetryableJobError(
            f"{len(retry)} read(s) of the directory failed and may succeed later "
            f"(first: {retry[0]}); nothing was applied, the message will be redelivered"
        )
    return state, problems


def _read_problem(person: Person, result: Result) -> str | None:
    if result.outcome is Outcome.SUCCEEDED or result.status == 404:
        return None
    return f"{person.where}: the directory refused the read: {result.error or result.status}"


def _accounts(result: Result) -> list[dict[str, Any]] | None:
    """The accounts a read found ([] for 404/none); None when the answer has more pages."""
    if result.outcome is not Outcome.SUCCEEDED:
        return []
    body = result.body if isinstance(result.body, dict) else {}
    if "value" not in body:
        return [body] if body.get("id") else []
    if body.get("@odata.nextLink"):
        return None
    return [u for u in body.get("value") or [] if isinstance(u, dict) and u.get("id")]


def _revoke_key(tenant: str, uid: str) -> str:
    return f"revoked/{tenant}/{uid}"


async def read_current_state(
    ctx: JobContext, people: Sequence[Person]
) -> tuple[CurrentState, list[str]]:
    """Read every person's account(s); RetryableJobError when a read failed for now."""
    reads = read_operations(people)
    if not reads:
        return CurrentState(), []
    try:
        report = await ctx.engine().run(reads)
        state, problems = interpret_reads(people, report.results)
        await _complete_memberships(ctx, people, state)
    except (ApiError, CredentialError) as exc:
        raise RetryableJobError(
            f"the directory could not be read ({exc}); nothing was applied, the message "
            "will be redelivered"
        ) from exc
    for person in people:
        if person.kind != "leaver":
            continue
        for account in state.accounts.get(person.index, []):
            uid = str(account["id"])
            if account.get("accountEnabled") is False and await ctx.store.is_done(
                _revoke_key(ctx.tenant, uid)
            ):
                state.revoked.add(uid)
    return state, problems


async def _complete_memberships(
    ctx: JobContext, people: Sequence[Person], state: CurrentState
) -> None:
    """An expanded memberOf of EXPAND_LIMIT or more may be cut short: read it in full for
    the people whose group lists depend on it."""
    client = None
    for person in people:
        if not (person.groups or person.remove_groups):
            continue
        candidates = list(state.accounts.get(person.index, []))
        owner = state.upn_owner.get(person.index)
        if owner is not None:
            candidates.append(owner)
        for account in candidates:
            member_of = account.get("memberOf")
            if isinstance(member_of, list) and len(member_of) < EXPAND_LIMIT:
                continue
            client = client or ctx.client()
            account["memberOf"] = [
                {"id": item.get("id")}
                async for item in client.paginate(
                    f"/users/{account['id']}/memberOf", {"$select": "id"}
                )
                if isinstance(item, dict)
            ]


# -- 3. planning (pure) -------------------------------------------------------------------


@dataclass
class PersonPlan:
    """What one person needs: operations with their human-readable lines, problems, and
    the leavers' revocations to remember once they succeeded (operation id, ledger key)."""

    steps: list[tuple[Operation, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    revokes: list[tuple[str, str]] = field(default_factory=list)

    def add(self, operation: Operation, line: str) -> None:
        self.steps.append((operation, line))


def _first_password() -> str:
    """A random first password meeting Entra ID's default policy (8-256 characters, 3 of 4
    classes: https://learn.microsoft.com/entra/identity/authentication/concept-sspr-policy
    #password-policies-that-only-apply-to-cloud-user-accounts): 24 characters, all four
    classes. Never logged or stored."""
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "!#%+-.:=?@^_~")
    chars = [secrets.choice(c) for c in classes]
    alphabet = "".join(classes)
    chars += [secrets.choice(alphabet) for _ in range(20)]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def _stored(value: Any) -> str | None:
    """A directory value the way we compare it: empty and missing are null."""
    return value if isinstance(value, str) and value else None


def plan_joiner(
    person: Person,
    accounts: Sequence[Mapping[str, Any]],
    upn_owner: Mapping[str, Any] | None,
    api_base: str,
) -> PersonPlan:
    """Create the joiner and add it to its groups — or, if it exists, plan it as a mover."""
    assert person.employee_id is not None
    assert person.upn is not None
    eid, upn = person.employee_id, person.upn
    if len(accounts) > 1:
        return _ambiguous(person, accounts)
    if accounts:
        return plan_mover(person, accounts[0], api_base)
    if upn_owner is not None:
        if str(upn_owner.get("employeeId") or "").casefold() == eid.casefold():
            return plan_mover(person, upn_owner, api_base)  # found by UPN: a lagging index
        other = upn_owner.get("employeeId")
        return PersonPlan(
            problems=[
                f"{person.where}: userPrincipalName {upn} already belongs to account "
                f"{upn_owner.get('id')} ("
                + (f"employeeId {other}" if other else "no employeeId")
                + "); not created"
            ]
        )
    attributes = {k: v for k, v in person.attributes.items() if v is not None}
    given, surname = attributes.get("givenName", ""), attributes.get("surname", "")
    body: dict[str, Any] = {
        "accountEnabled": True,
        "displayName": attributes.get("displayName") or f"{given} {surname}".strip(),
        "mailNickname": upn.split("@", 1)[0],
        "userPrincipalName": upn,
        "employeeId": eid,
        # a random first password the user must change; never logged or stored
        "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": _first_password()},
    }
    for name, value in attributes.items():
        body.setdefault(name, value)
    plan = PersonPlan()
    create = f"create-{eid}"
    plan.add(
        Operation(
            create,
            "POST",
            "/users",
            body,
            headers=_JSON,
            idempotency=CreateIdentity(
                path=f"/users?$filter=employeeId eq '{_odata_quote(eid)}'&$select={_SELECT}",
                attribute="employeeId",
                value=eid,
                case_sensitive=False,
            ),
        ),
        f"create {upn} (employeeId {eid})",
    )
    for group in person.groups:
        plan.add(
            Operation(
                f"add-{eid}-{group}",
                "POST",
                f"/groups/{group}/members/$ref",
                # the new user's object id is not known yet: the engine references it by
                # the id the create returned (reference_from); the UPN names the same user
                {"@odata.id": user_url(api_base, upn)},
                headers=_JSON,
                depends_on=(create,),
                reference_from=create,
            ),
            f"add {upn} to group {group}",
        )
    return plan


def plan_mover(person: Person, user: Mapping[str, Any], api_base: str) -> PersonPlan:
    """Attribute changes (only what differs from the directory) and memberships."""
    key, uid = person.key, str(user["id"])
    name = user.get("userPrincipalName") or uid
    plan = PersonPlan()
    changes = {
        attr: value for attr, value in person.attributes.items() if value != _stored(user.get(attr))
    }
    if changes:
        plan.add(
            Operation(f"update-{key}", "PATCH", f"/users/{uid}", changes, headers=_JSON),
            f"update {name}: {sorted(changes)}",
        )
    member_of = {
        str(g.get("id")).lower()
        for g in user.get("memberOf") or []
        if isinstance(g, Mapping) and g.get("id")
    }
    for group in person.groups:
        if group not in member_of:
            plan.add(
                Operation(
                    f"add-{key}-{group}",
                    "POST",
                    f"/groups/{group}/members/$ref",
                    {"@odata.id": directory_object_url(api_base, uid)},
                    headers=_JSON,
                ),
                f"add {name} to group {group}",
            )
    for group in person.remove_groups:
        if group in member_of:
            plan.add(
                Operation(f"remove-{key}-{group}", "DELETE", f"/groups/{group}/members/{uid}/$ref"),
                f"remove {name} from group {group}",
            )
    return plan


def plan_leaver(
    person: Person, accounts: Sequence[Mapping[str, Any]], revoked: set[str], tenant: str
) -> PersonPlan:
    """Disable every matching account and revoke its sessions; an account already disabled
    and signed out by an earlier run is left alone."""
    plan = PersonPlan()
    if not accounts:
        what = "no such user" if person.object_id else "no user with this employeeId"
        plan.problems.append(f"{person.where}: {what}")
        return plan
    for user in accounts:
        uid = str(user["id"])
        name = user.get("userPrincipalName") or uid
        disable, revoke = f"disable-{uid}", f"revoke-{uid}"
        depends: tuple[str, ...] = ()
        if user.get("accountEnabled", True) is not False:
            plan.add(
                Operation(
                    disable, "PATCH", f"/users/{uid}", {"accountEnabled": False}, headers=_JSON
                ),
                f"disable {name}",
            )
            depends = (disable,)
        elif uid in revoked:
            continue  # disabled and signed out already: a redelivered message does nothing
        plan.add(
            Operation(
                revoke,
                "POST",
                f"/users/{uid}/revokeSignInSessions",
                {},
                headers=_JSON,
                depends_on=depends,
                idempotent=True,
            ),
            f"revoke sessions of {name}",
        )
        plan.revokes.append((revoke, _revoke_key(tenant, uid)))
    return plan


def _ambiguous(person: Person, accounts: Sequence[Mapping[str, Any]]) -> PersonPlan:
    ids = ", ".join(str(a.get("id")) for a in accounts[:5])
    return PersonPlan(
        problems=[
            f"{person.where}: {len(accounts)} accounts have this employeeId ({ids}); which one "
            "to change is ambiguous: resolve the duplicates"
        ]
    )


def plan_person(person: Person, state: CurrentState, *, api_base: str, tenant: str) -> PersonPlan:
    """The plan for one person from the state read (pure)."""
    if person.index not in state.accounts:
        return PersonPlan()  # its read was refused: reported as a problem already
    accounts = state.accounts[person.index]
    if person.kind == "leaver":
        return plan_leaver(person, accounts, state.revoked, tenant)
    if person.kind == "joiner":
        return plan_joiner(person, accounts, state.upn_owner.get(person.index), api_base)
    if not accounts:
        return PersonPlan(problems=[f"{person.where}: no user with this employeeId"])
    if len(accounts) > 1:
        return _ambiguous(person, accounts)
    return plan_mover(person, accounts[0], api_base)


def merge(plans: Iterable[PersonPlan]) -> tuple[Plan, list[tuple[str, str]]]:
    """One Plan from the people's plans; an operation planned twice (the same account as
    a leaver by id and by employeeId) is kept once."""
    plan, seen = Plan(), set()
    revokes: list[tuple[str, str]] = []
    for person_plan in plans:
        plan.problems.extend(person_plan.problems)
        for operation, line in person_plan.steps:
            if operation.id in seen:
                continue
            seen.add(operation.id)
            plan.operations.append(operation)
            plan.lines.append(line)
        revokes.extend(r for r in person_plan.revokes if r not in revokes)
    return plan, revokes


class ProvisionJob:
    name = "provision"

    async def plan(self, ctx: JobContext) -> Plan:
        validated = validate_payload(ctx.payload, domain=ctx.instance.settings.user_domain)
        state, read_problems = await read_current_state(ctx, validated.people)
        api_base = ctx.client().base.text
        plan, revokes = merge(
            plan_person(person, state, api_base=api_base, tenant=ctx.tenant)
            for person in validated.people
        )
        plan.problems[:0] = [*validated.problems, *read_problems]
        if revokes:

            async def remember(report: EngineReport) -> None:
                results = report.by_id()
                for operation_id, ledger_key in revokes:
                    result = results.get(operation_id)
                    if result is not None and result.outcome is Outcome.SUCCEEDED:
                        await ctx.store.mark_done(ledger_key, note=ctx.message.correlation_id)

            plan.after.append(remember)
        return plan
