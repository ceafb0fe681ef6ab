"""``provision``: joiners, movers and leavers.

Payload::

    {"joiners": [{"employeeId": "E1", "givenName": "Ada", "surname": "Lovelace",
                  "department": "R&D", "jobTitle": "Engineer", "groups": ["<group id>"]}],
     "movers":  [{"employeeId": "E2", "department": "Sales", "groups": [...],
                  "removeGroups": [...]}],
     "leavers": [{"employeeId": "E3"} | {"id": "<user object id>"}]}

Planning reads the directory first, so a redelivered message changes nothing the second
time: a joiner that exists is treated as a mover, a disabled leaver is skipped, a member
already in a group is not added again. A joiner's userPrincipalName is deterministic
(given.surname.employeeid@DAEMON_USER_DOMAIN) and ``employeeId`` is the correlation
attribute that makes a create safe to resend (read back on ObjectConflict).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping
from typing import Any

from shared.errors import InvalidMessageError, SettingError
from shared.jobs.base import JobContext, Plan
from shared.webapi import CreateIdentity, EngineReport, Operation, Outcome

__all__ = ["ProvisionJob", "user_principal_name"]

ATTRIBUTES = ("displayName", "givenName", "surname", "department", "jobTitle", "officeLocation")
_SELECT = "id,userPrincipalName,employeeId,accountEnabled," + ",".join(ATTRIBUTES)
_EMPLOYEE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GUID_RE = re.compile(r"^[0-9a-fA-F-]{36}$")
_MAX_PEOPLE = 200  # per message: keeps one run well inside functionTimeout
_JSON = {"Content-Type": "application/json"}


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


def user_principal_name(person: Mapping[str, Any], domain: str) -> str:
    """given.surname.employeeid@domain, ASCII, lower case: the same input, the same UPN."""
    parts = [
        _ascii_slug(str(person.get("givenName", ""))),
        _ascii_slug(str(person.get("surname", ""))),
    ]
    local = ".".join(p for p in parts if p) or "user"
    return f"{local}.{_ascii_slug(str(person['employeeId']))}@{domain}"


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


def _people(payload: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = payload.get(key, [])
    if not isinstance(value, list) or not all(isinstance(p, Mapping) for p in value):
        raise InvalidMessageError(f"payload '{key}' must be a list of objects")
    return value


def _groups(person: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = person.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(g, str) and _GUID_RE.match(g) for g in value
    ):
        raise ValueError(f"{where}: '{key}' must be a list of group object ids")
    return list(dict.fromkeys(value))


class ProvisionJob:
    name = "provision"

    async def plan(self, ctx: JobContext) -> Plan:
        payload = ctx.payload
        joiners = _people(payload, "joiners")
        movers = _people(payload, "movers")
        leavers = _people(payload, "leavers")
        unknown = set(payload) - {"joiners", "movers", "leavers"}
        if unknown:
            raise InvalidMessageError(f"unknown payload fields: {', '.join(sorted(unknown))}")
        if len(joiners) + len(movers) + len(leavers) > _MAX_PEOPLE:
            raise InvalidMessageError(f"more than {_MAX_PEOPLE} people in one message: split it")
        plan = Plan()
        # 1. validate each person on its own: a bad one fails alone
        wanted: dict[str, tuple[str, Mapping[str, Any]]] = {}
        by_id: dict[str, Mapping[str, Any]] = {}
        for kind, people in (("joiner", joiners), ("mover", movers), ("leaver", leavers)):
            for index, person in enumerate(people):
                where = f"{kind} #{index + 1}"
                if kind == "leaver" and "id" in person:
                    if not isinstance(person["id"], str) or not _GUID_RE.match(person["id"]):
                        plan.problems.append(f"{where}: 'id' must be a user object id")
                    else:
                        by_id[person["id"]] = person
                    continue
                employee_id = person.get("employeeId")
                if not isinstance(employee_id, str) or not _EMPLOYEE_ID_RE.match(employee_id):
                    plan.problems.append(f"{where}: 'employeeId' is missing or malformed")
                    continue
                if employee_id in wanted:
                    plan.problems.append(f"{where}: employeeId {employee_id} appears twice")
                    continue
                wanted[employee_id] = (kind, person)

        # 2. read the current state (one GET each, batched through the engine)
        reads = [
            Operation(
                f"read-e-{eid}",
                "GET",
                f"/users?$filter=employeeId eq '{_odata_quote(eid)}'&$select={_SELECT}"
                "&$expand=memberOf($select=id)",
            )
            for eid in wanted
        ] + [Operation(f"read-i-{uid}", "GET", f"/users/{uid}?$select={_SELECT}") for uid in by_id]
        current: dict[str, dict[str, Any] | None] = {}
        if reads:
            report = await ctx.engine().run(reads)
            for result in report.results:
                key = result.operation_id
                if result.outcome is Outcome.SUCCEEDED:
                    body = result.body if isinstance(result.body, dict) else {}
                    if key.startswith("read-e-"):
                        found = body.get("value") or []
                        current[key] = found[0] if found else None
                    else:
                        current[key] = body
                elif result.status == 404:
                    current[key] = None
                else:
                    plan.problems.append(f"could not read {key[7:]}: {result.error}")

        # 3. plan per person
        domain = ctx.instance.settings.user_domain
        for eid, (kind, person) in wanted.items():
            key = f"read-e-{eid}"
            if key not in current:
                continue  # its read failed: reported above
            user = current[key]
            try:
                if kind == "leaver":
                    if user is None:
                        plan.problems.append(f"leaver {eid}: no user with this employeeId")
                    else:
                        await self._leaver(ctx, plan, user, eid)
                elif user is None and kind == "joiner":
                    if domain is None:
                        raise SettingError(
                            "DAEMON_USER_DOMAIN", "is required to create users (joiners)"
                        )
                    self._joiner(plan, person, eid, domain)
                elif user is None:
                    plan.problems.append(f"mover {eid}: no user with this employeeId")
                else:
                    self._mover(plan, person, user, eid)
            except ValueError as exc:
                plan.problems.append(str(exc))
        for uid in by_id:
            user = current.get(f"read-i-{uid}")
            if f"read-i-{uid}" not in current:
                continue
            if user is None:
                plan.problems.append(f"leaver {uid}: no such user")
            else:
                await self._leaver(ctx, plan, user, uid)
        return plan

    def _joiner(self, plan: Plan, person: Mapping[str, Any], eid: str, domain: str) -> None:
        where = f"joiner {eid}"
        given, surname = person.get("givenName"), person.get("surname")
        if not isinstance(given, str) or not isinstance(surname, str) or not (given or surname):
            raise ValueError(f"{where}: 'givenName' and 'surname' are required")
        groups = _groups(person, "groups", where)
        upn = user_principal_name(person, domain)
        body: dict[str, Any] = {
            "accountEnabled": True,
            "displayName": person.get("displayName") or f"{given} {surname}".strip(),
            "mailNickname": upn.split("@", 1)[0].replace(".", "")[:64],
            "userPrincipalName": upn,
            "employeeId": eid,
            "givenName": given,
            "surname": surname,
            # a random first password the user must change; never logged or stored
            "passwordProfile": {
                "forceChangePasswordNextSignIn": True,
                "password": secrets.token_urlsafe(18) + "!a1",
            },
        }
        for name in ATTRIBUTES:
            if name not in body and isinstance(person.get(name), str):
                body[name] = person[name]
        create = f"create-{eid}"
        plan.operations.append(
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
                ),
            )
        )
        plan.lines.append(f"create {upn} (employeeId {eid})")
        for group in groups:
            plan.operations.append(
                Operation(
                    f"add-{eid}-{group}",
                    "POST",
                    f"/groups/{group}/members/$ref",
                    {"@odata.id": f"https://graph.microsoft.com/v1.0/users/{upn}"},
                    headers=_JSON,
                    depends_on=(create,),
                )
            )
            plan.lines.append(f"add {upn} to group {group}")

    def _mover(
        self, plan: Plan, person: Mapping[str, Any], user: Mapping[str, Any], eid: str
    ) -> None:
        where = f"mover {eid}"
        changes = {
            name: person[name]
            for name in ATTRIBUTES
            if isinstance(person.get(name), str) and person[name] != user.get(name)
        }
        uid = str(user["id"])
        if changes:
            plan.operations.append(
                Operation(f"update-{eid}", "PATCH", f"/users/{uid}", changes, headers=_JSON)
            )
            plan.lines.append(f"update {user.get('userPrincipalName')}: {sorted(changes)}")
        member_of = {str(g.get("id")) for g in user.get("memberOf") or [] if isinstance(g, Mapping)}
        for group in _groups(person, "groups", where):
            if group not in member_of:
                plan.operations.append(
                    Operation(
                        f"add-{eid}-{group}",
                        "POST",
                        f"/groups/{group}/members/$ref",
                        {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid}"},
                        headers=_JSON,
                    )
                )
                plan.lines.append(f"add {user.get('userPrincipalName')} to group {group}")
        for group in _groups(person, "removeGroups", where):
            if group in member_of:
                plan.operations.append(
                    Operation(
                        f"remove-{eid}-{group}", "DELETE", f"/groups/{group}/members/{uid}/$ref"
                    )
                )
                plan.lines.append(f"remove {user.get('userPrincipalName')} from group {group}")

    async def _leaver(self, ctx: JobContext, plan: Plan, user: Mapping[str, Any], key: str) -> None:
        uid = str(user["id"])
        revoke_key = f"revoked/{ctx.tenant}/{uid}"
        disable = f"disable-{key}"
        revoke = f"revoke-{key}"
        revoke_depends: tuple[str, ...] = ()
        if user.get("accountEnabled", True):
            plan.operations.append(
                Operation(
                    disable, "PATCH", f"/users/{uid}", {"accountEnabled": False}, headers=_JSON
                )
            )
            plan.lines.append(f"disable {user.get('userPrincipalName')}")
            revoke_depends = (disable,)
        elif await ctx.store.is_done(revoke_key):
            return  # disabled and signed out already: a redelivered message does nothing
        plan.operations.append(
            Operation(
                revoke,
                "POST",
                f"/users/{uid}/revokeSignInSessions",
                {},
                headers=_JSON,
                depends_on=revoke_depends,
                idempotent=True,
            )
        )
        plan.lines.append(f"revoke sessions of {user.get('userPrincipalName')}")

        async def remember(report: EngineReport) -> None:
            result = report.by_id().get(revoke)
            if result is not None and result.outcome is Outcome.SUCCEEDED:
                await ctx.store.mark_done(revoke_key, note=ctx.message.correlation_id)

        plan.after.append(remember)
