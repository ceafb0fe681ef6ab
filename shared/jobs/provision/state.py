"""Reading the directory's current state for a message's people.

A read that failed (5xx, transport, throttled past the bound, token or permission) raises
:class:`RetryableJobError`: nothing is applied and the message is redelivered. A 404 or an
empty result is an answer ("no such user"), not a failure. :func:`interpret_reads` is pure;
:func:`read_current_state` runs the reads through the context's batch engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ApiError, CredentialError, RetryableJobError
from shared.jobs.context import JobContext
from shared.jobs.provision.people import ATTRIBUTES, Person
from shared.webapi import Operation, Outcome, Result

__all__ = [
    "EXPAND_LIMIT",
    "SELECT",
    "CurrentState",
    "interpret_reads",
    "odata_quote",
    "read_current_state",
    "read_operations",
    "revoke_key",
]

SELECT = "id,userPrincipalName,employeeId,accountEnabled," + ",".join(ATTRIBUTES)
_EXPAND = "memberOf($select=id)"
# "$expand typically returns a maximum of 20 items for the expanded relationship and has no
# @odata.nextLink" (https://learn.microsoft.com/graph/query-parameters#expand-parameter):
# an expanded memberOf this long may be cut short, so it is read again in full.
EXPAND_LIMIT = 20


def odata_quote(value: str) -> str:
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
                    f"/users/{person.object_id}?$select={SELECT}",
                )
            )
            continue
        assert person.employee_id is not None
        reads.append(
            Operation(
                _read_id(person, "eid"),
                "GET",
                f"/users?$filter=employeeId eq '{odata_quote(person.employee_id)}'"
                f"&$select={SELECT}&$expand={_EXPAND}",
            )
        )
        if person.upn is not None:
            reads.append(
                Operation(
                    _read_id(person, "upn"),
                    "GET",
                    f"/users/{person.upn}?$select={SELECT}&$expand={_EXPAND}",
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


def revoke_key(tenant: str, uid: str) -> str:
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
                revoke_key(ctx.tenant, uid)
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
