"""The Microsoft Graph application permissions each job needs, in one table.

Each requirement is a set of alternatives: any one of them satisfies it (the least
privileged first). ``doctor`` compares a token's ``roles`` claim with the requirements of
the configured jobs and names each one missing; the README's permissions section lists the
same table.

Sources (Microsoft Graph v1.0 permission tables, application rows, least privileged first):

- list/get users, delta: https://learn.microsoft.com/graph/api/user-list,
  https://learn.microsoft.com/graph/api/user-delta — User.Read.All
- a user's direct memberships (memberOf): https://learn.microsoft.com/graph/api/user-list-memberof
  — Directory.Read.All for another user's memberships. With only User.Read.All Graph answers
  with "limited information" (id and @odata.type) for objects it may not read; that would be
  enough for us, but the page's table names Directory.Read.All, so we require it (stricter).
- create user: https://learn.microsoft.com/graph/api/user-post-users — User.ReadWrite.All
- update user: https://learn.microsoft.com/graph/api/user-update — User.ReadWrite.All for
  the profile attributes; accountEnabled alone: User.EnableDisableAccount.All (with
  User.Read.All, required above anyway)
- revokeSignInSessions: https://learn.microsoft.com/graph/api/user-revokesigninsessions —
  User.RevokeSessions.All, and the table lists no higher application permission, so
  User.ReadWrite.All and Directory.ReadWrite.All are not taken as granting it (stricter)
- add / remove group member: https://learn.microsoft.com/graph/api/group-post-members,
  https://learn.microsoft.com/graph/api/group-delete-members — GroupMember.ReadWrite.All
- employeeLeaveDateTime: https://learn.microsoft.com/graph/api/resources/user —
  "To read this property, the calling app must be assigned the User-LifeCycleInfo.Read.All
  permission. To write this property, … User.Read.All and User-LifeCycleInfo.ReadWrite.All"
  (also https://learn.microsoft.com/graph/tutorial-lifecycle-workflows-set-employeeleavedatetime)

Grant them under App registrations → API permissions → Microsoft Graph → Application
permissions, then "Grant admin consent" (each customer tenant of a multi-tenant app consents
with the link of ``python -m shared consent-url``).
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


_READ_USERS = Requirement(
    "read users (by employeeId, object id, userPrincipalName; delta)",
    ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
)
_READ_MEMBER_OF = Requirement(
    "read users' direct group memberships (memberOf)",
    ("Directory.Read.All", "Directory.ReadWrite.All"),
)
_WRITE_USERS = Requirement(
    "create users and update their attributes",
    ("User.ReadWrite.All", "Directory.ReadWrite.All"),
)
_DISABLE_USERS = Requirement(
    "disable accounts (accountEnabled)",
    ("User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
)
_REVOKE_SESSIONS = Requirement(
    "revoke users' sign-in sessions (revokeSignInSessions)", ("User.RevokeSessions.All",)
)
_WRITE_MEMBERS = Requirement(
    "add and remove group members",
    ("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"),
)
_READ_GROUP_MEMBERS = Requirement(
    "read groups and their members",
    (
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
)
_READ_LEAVE_DATE = Requirement(
    "read employeeLeaveDateTime (the leaver rule)",
    ("User-LifeCycleInfo.Read.All", "User-LifeCycleInfo.ReadWrite.All"),
)

# Keys are job names, and "sweep" for the timer. "operations" sends what its messages ask,
# within DAEMON_OPERATIONS_ALLOWED_METHODS/_PATHS: its row is what the default allow-list
# (GET and PATCH under /users/ and /groups/) reaches for users and memberships; a narrower
# allow-list may need less, and PATCHing other group properties needs Group.ReadWrite.All.
JOB_PERMISSIONS: Mapping[str, tuple[Requirement, ...]] = {
    "provision": (
        _READ_USERS,
        _READ_MEMBER_OF,
        _WRITE_USERS,
        _DISABLE_USERS,
        _REVOKE_SESSIONS,
        _WRITE_MEMBERS,
    ),
    "operations": (_READ_USERS, _READ_GROUP_MEMBERS, _WRITE_USERS, _WRITE_MEMBERS),
    "sweep": (_READ_USERS, _READ_LEAVE_DATE),
}


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
