"""Planning per person (pure: no I/O): a validated person and the state read become the
operations that bring the directory to what the message asks, and nothing more.

Redelivery changes nothing: the plan compares with the directory's state, the way Graph
stores values (an empty optional attribute means "clear it" and is stored as null), a
joiner that exists is planned as a mover, a disabled and signed-out leaver is skipped, a
member already in a group is not added again.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.jobs.base import Plan
from shared.jobs.provision.people import Person
from shared.jobs.provision.state import SELECT, CurrentState, odata_quote, revoke_key
from shared.webapi import CreateIdentity, Operation
from shared.webapi.urls import directory_object_url, user_url

__all__ = [
    "PersonPlan",
    "merge",
    "plan_joiner",
    "plan_leaver",
    "plan_mover",
    "plan_person",
]

_JSON = {"Content-Type": "application/json"}


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
                path=f"/users?$filter=employeeId eq '{odata_quote(eid)}'&$select={SELECT}",
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
        plan.revokes.append((revoke, revoke_key(tenant, uid)))
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
