"""The Microsoft Graph application permissions each job needs, in one table.

Each requirement is a set of alternatives: any one of them satisfies it (the least
privileged first). ``doctor`` compares a token's ``roles`` claim with the requirements of
the configured jobs and names each one missing; the README's permissions section lists the
same table.

Sources (Microsoft Graph v1.0 permission tables, "least privileged" column):
- create/update users: https://learn.microsoft.com/graph/api/user-post-users
- read/write employeeLeaveDateTime: https://learn.microsoft.com/graph/api/resources/user
  (property notes: User-LifeCycleInfo.Read.All / User-LifeCycleInfo.ReadWrite.All)
- group members: https://learn.microsoft.com/graph/api/group-post-members
- revoke sessions: https://learn.microsoft.com/graph/api/user-revokesigninsessions
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["JOB_PERMISSIONS", "Requirement", "missing_permissions", "required"]


@dataclass(frozen=True)
class Requirement:
    """One capability a job needs; ``any_of`` lists the roles that grant it."""

    what: str
    any_of: tuple[str, ...]

    @property
    def least(self) -> str:
        return self.any_of[0]

    def satisfied_by(self, roles: Iterable[str]) -> bool:
        granted = set(roles)
        return any(role in granted for role in self.any_of)


# Filled in by the permissions work (issue: correct on real Graph); keys are job names and
# "sweep" for the timer.
JOB_PERMISSIONS: Mapping[str, tuple[Requirement, ...]] = {}


def required(jobs: Iterable[str]) -> list[Requirement]:
    """The requirements of ``jobs``, each once, in table order."""
    out: list[Requirement] = []
    for job in jobs:
        for requirement in JOB_PERMISSIONS.get(job, ()):
            if requirement not in out:
                out.append(requirement)
    return out


def missing_permissions(roles: Iterable[str], jobs: Iterable[str]) -> list[Requirement]:
    """The requirements of ``jobs`` that ``roles`` (a token's ``roles`` claim) do not meet."""
    granted = list(roles)
    return [r for r in required(jobs) if not r.satisfied_by(granted)]
