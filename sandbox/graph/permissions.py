"""The application permissions (app roles) each operation accepts, any one of a set.

Per operation as listed under "Permissions" of its Graph v1.0 page, e.g.
learn.microsoft.com/graph/api/user-list, group-post-members and
learn.microsoft.com/graph/api/resources/user (``employeeLeaveDateTime`` needs
``User-LifeCycleInfo.*``).
"""

from __future__ import annotations

READ_USERS = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
WRITE_USERS = frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})
REVOKE_SESSIONS = frozenset(
    {"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
)
READ_GROUPS = frozenset(
    {
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
WRITE_GROUPS = frozenset({"Group.ReadWrite.All", "Directory.ReadWrite.All"})
WRITE_MEMBERS = frozenset(
    {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
)
LIFECYCLE_READ = frozenset({"User-LifeCycleInfo.Read.All", "User-LifeCycleInfo.ReadWrite.All"})
LIFECYCLE_WRITE = frozenset({"User-LifeCycleInfo.ReadWrite.All"})
