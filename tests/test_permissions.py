"""The application permissions each job needs, and what a token's roles lack (pure)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.permissions import JOB_PERMISSIONS, Requirement, missing_permissions, required

ROOT = Path(__file__).resolve().parents[1]
LEAST = {
    "provision": [
        "User.Read.All",
        "Directory.Read.All",
        "User.ReadWrite.All",
        "User.EnableDisableAccount.All",
        "User.RevokeSessions.All",
        "GroupMember.ReadWrite.All",
    ],
    "operations": [
        "User.Read.All",
        "GroupMember.Read.All",
        "User.ReadWrite.All",
        "GroupMember.ReadWrite.All",
    ],
    "sweep": ["User.Read.All", "User-LifeCycleInfo.Read.All"],
}
# Graph's application permission names: Resource[-Qualifier].Operation[.Constraint]
ROLE = re.compile(r"^[A-Z][A-Za-z]+(-[A-Za-z]+)?(\.[A-Z][A-Za-z]+)+$")


def test_every_job_and_the_timer_has_its_least_privileged_roles() -> None:
    assert set(JOB_PERMISSIONS) == {"provision", "operations", "sweep"}
    for job, least in LEAST.items():
        assert [r.least for r in JOB_PERMISSIONS[job]] == least


def test_requirements_are_well_formed() -> None:
    for requirements in JOB_PERMISSIONS.values():
        for requirement in requirements:
            assert requirement.what
            assert requirement.any_of
            assert len(set(requirement.any_of)) == len(requirement.any_of)
            assert all(ROLE.match(role) for role in requirement.any_of), requirement


def test_least_privileged_roles_satisfy_everything() -> None:
    for job, least in LEAST.items():
        assert missing_permissions(least, [job]) == []
    everything = {role for roles in LEAST.values() for role in roles}
    assert missing_permissions(everything, list(JOB_PERMISSIONS)) == []


def test_nothing_granted_lacks_every_requirement_once() -> None:
    all_jobs = list(JOB_PERMISSIONS)
    missing = missing_permissions([], all_jobs)
    assert missing == required(all_jobs)
    assert len(missing) == len(set(missing))
    # read users is shared by the three and listed once
    assert sum(1 for r in missing if r.least == "User.Read.All") == 1


@pytest.mark.parametrize(
    ("roles", "jobs", "missing_least"),
    [
        # the sandbox's default consent: no lifecycle role, so the sweep cannot read leave dates
        (
            ["User.ReadWrite.All", "Group.ReadWrite.All", "User.RevokeSessions.All",
             "Directory.Read.All"],
            ["provision", "sweep"],
            ["User-LifeCycleInfo.Read.All"],
        ),
        # Directory.ReadWrite.All does not grant revokeSignInSessions (no higher permission)
        (["Directory.ReadWrite.All"], ["provision"], ["User.RevokeSessions.All"]),
        (["User.ReadWrite.All"], ["provision"],
         ["Directory.Read.All", "User.RevokeSessions.All", "GroupMember.ReadWrite.All"]),
        (["User.Read.All"], ["sweep"], ["User-LifeCycleInfo.Read.All"]),
        (["User.Read.All", "User-LifeCycleInfo.ReadWrite.All"], ["sweep"], []),
        ([], ["no-such-job"], []),
    ],
)  # fmt: skip
def test_missing_permissions_names_each_gap(
    roles: list[str], jobs: list[str], missing_least: list[str]
) -> None:
    assert [r.least for r in missing_permissions(roles, jobs)] == missing_least


def test_roles_are_compared_exactly() -> None:
    assert missing_permissions(["user.read.all"], ["sweep"])[0].least == "User.Read.All"
    requirement = Requirement("x", ("A.Read.All", "A.ReadWrite.All"))
    assert requirement.satisfied_by(iter(["A.ReadWrite.All"]))
    assert not requirement.satisfied_by(["A.Read"])


def test_readme_and_runbook_list_each_jobs_least_privileged_roles() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Permissions", 1)[1].split("\n## ", 1)[0]
    runbook = (ROOT / "docs" / "permissions.md").read_text()
    for job, least in LEAST.items():
        for role in least:
            assert f"`{role}`" in section, (job, role)
            assert f"`{role}`" in runbook, (job, role)
    assert "Grant admin consent" in section
    assert "consent-url" in runbook
