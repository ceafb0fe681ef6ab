"""The ``provision`` job: validate → read current state → plan per person.

Each step is a named function of its own module: :func:`validate` (people.py),
:func:`read_current_state` (state.py) and :func:`plan_people` (planners.py, pure). The job
only chains them and, for leavers, remembers the revoked sessions once they succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.jobs.base import AfterApply, Plan
from shared.jobs.context import DoneLedger, JobContext
from shared.jobs.provision.people import Validated, validate_payload
from shared.jobs.provision.planners import merge, plan_person
from shared.jobs.provision.state import CurrentState, read_current_state
from shared.webapi import EngineReport, Outcome

__all__ = ["ProvisionJob", "plan_people", "remember_revocations", "validate"]


def validate(ctx: JobContext) -> Validated:
    """Step 1: the message's people, each validated on its own."""
    return validate_payload(ctx.payload, domain=ctx.settings.user_domain)


def plan_people(
    validated: Validated,
    state: CurrentState,
    read_problems: Sequence[str],
    *,
    api_base: str,
    tenant: str,
) -> tuple[Plan, list[tuple[str, str]]]:
    """Step 3 (pure): one plan from every person's; the problems of validation and of the
    reads come first. Also returns the leavers' revocations to remember."""
    plan, revokes = merge(
        plan_person(person, state, api_base=api_base, tenant=tenant) for person in validated.people
    )
    plan.problems[:0] = [*validated.problems, *read_problems]
    return plan, revokes


def remember_revocations(
    ledger: DoneLedger, revokes: Sequence[tuple[str, str]], note: str
) -> AfterApply:
    """After the apply: mark each revocation that succeeded as done, so a redelivered
    leaver (disabled already) is not signed out again."""

    async def remember(report: EngineReport) -> None:
        results = report.by_id()
        for operation_id, ledger_key in revokes:
            result = results.get(operation_id)
            if result is not None and result.outcome is Outcome.SUCCEEDED:
                await ledger.mark_done(ledger_key, note=note)

    return remember


class ProvisionJob:
    name = "provision"

    async def plan(self, ctx: JobContext) -> Plan:
        validated = validate(ctx)
        state, read_problems = await read_current_state(ctx, validated.people)
        plan, revokes = plan_people(
            validated,
            state,
            read_problems,
            api_base=ctx.client().base.text,
            tenant=ctx.tenant,
        )
        if revokes:
            plan.after.append(remember_revocations(ctx.store, revokes, ctx.message.correlation_id))
        return plan
