"""Directory state per tenant: users, groups, memberships and a change log for delta queries."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError, bad_request, not_found
from .schema import (
    GROUP_PROPERTIES,
    GROUP_READ_ONLY,
    GROUP_REQUIRED_ON_CREATE,
    USER_NEVER_RETURNED,
    USER_PROPERTIES,
    USER_READ_ONLY,
    USER_REQUIRED_ON_CREATE,
)

# string properties whose equality filters are looked up in an index (see TenantDirectory)
USER_VALUE_INDEXES = ("employeeId", "mail")


def utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str) -> dt.datetime:
    """Parse an OData DateTimeOffset (``2024-05-01T00:00:00Z``, offsets, fractions)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def check_value(kind: str, name: str, value: Any, type_name: str) -> Any:
    """Validate one property value; return it normalized or raise Graph's 400."""
    if value is None:
        return None
    ok = False
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "strs":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif kind == "obj":
        ok = isinstance(value, dict)
    elif kind == "datetime" and isinstance(value, str):
        try:
            value = parse_datetime(value).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            ok = True
        except ValueError:
            ok = False
    if not ok:
        raise bad_request(
            f"Invalid value specified for property '{name}' of resource '{type_name}'."
        )
    return value


@dataclass
class TenantDirectory:
    """One tenant's objects. ``seq`` orders changes for delta queries."""

    tenant_id: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    upn_index: dict[str, str] = field(default_factory=dict)
    # property -> lower-cased value -> ids, for USER_VALUE_INDEXES: ``$filter=employeeId eq``
    # is looked up, not scanned (a scan per joiner of a directory of tens of thousands made
    # the sandbox, not the daemon, the bottleneck). Kept by create/update/delete_user, the
    # only places a user record changes.
    value_index: dict[str, dict[str, dict[str, None]]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, None]] = field(default_factory=dict)  # group -> ordered ids
    user_seq: dict[str, int] = field(default_factory=dict)  # user id -> last change
    removed: dict[str, int] = field(default_factory=dict)  # deleted user id -> change seq
    seq: int = 0
    passwords: set[str] = field(default_factory=set)  # for the log-hygiene check of tests
    # object id -> service-clock instant of its creation through the API (replication delay);
    # objects seeded directly are not listed: they count as replicated.
    created_at: dict[str, float] = field(default_factory=dict)
    verified_domains: set[str] = field(default_factory=set)  # lower-case; empty: config's

    def bump(self) -> int:
        self.seq += 1
        return self.seq

    # -- users ------------------------------------------------------------------------------
    def _index_user(self, user: dict[str, Any], *, add: bool) -> None:
        for prop in USER_VALUE_INDEXES:
            value = user.get(prop)
            if value is None:
                continue
            ids = self.value_index.setdefault(prop, {}).setdefault(str(value).lower(), {})
            if add:
                ids[user["id"]] = None
            else:
                ids.pop(user["id"], None)

    def users_with(self, prop: str, values: frozenset[str]) -> list[dict[str, Any]] | None:
        """The users whose ``prop`` is one of ``values`` (lower-cased), from the index; None
        when ``prop`` is not indexed (scan instead)."""
        if prop not in USER_VALUE_INDEXES:
            return None
        index = self.value_index.get(prop, {})
        return [self.users[i] for v in values for i in index.get(v, ())]

    def find_user(self, key: str) -> dict[str, Any] | None:
        user = self.users.get(key)
        if user is None:
            user_id = self.upn_index.get(key.lower())
            user = self.users.get(user_id) if user_id else None
        return user

    def get_user(self, key: str) -> dict[str, Any]:
        user = self.find_user(key)
        if user is None:
            raise not_found(key)
        return user

    def create_user(self, props: dict[str, Any]) -> dict[str, Any]:
        for name in USER_REQUIRED_ON_CREATE:
            if props.get(name) in (None, ""):
                raise bad_request(f"Property '{name}' value is required but is empty or missing.")
        password = props["passwordProfile"]
        if not isinstance(password, dict) or not password.get("password"):
            raise bad_request(
                "Property 'passwordProfile' value is required but is empty or missing."
            )
        self.passwords.add(str(password["password"]))
        user = self._validated("user", props, creating=True)
        upn = str(user["userPrincipalName"])
        if "@" not in upn:
            raise bad_request(
                "Invalid value specified for property 'userPrincipalName' of resource 'User'."
            )
        if upn.lower() in self.upn_index:
            raise GraphError(
                400,
                "Request_BadRequest",
                "Another object with the same value for property userPrincipalName already exists.",
                details=[{"code": "ObjectConflict", "target": "userPrincipalName"}],
            )
        user_id = str(uuid.uuid4())
        record: dict[str, Any] = {name: None for name in USER_PROPERTIES}
        record.update(businessPhones=[], otherMails=[], proxyAddresses=[], userType="Member")
        record.update(user)
        record["id"] = user_id
        record["createdDateTime"] = utc_now_iso()
        if record.get("mail"):
            record["proxyAddresses"] = [f"SMTP:{record['mail']}"]
        self.users[user_id] = record
        self.upn_index[upn.lower()] = user_id
        self._index_user(record, add=True)
        self.user_seq[user_id] = self.bump()
        return record

    def update_user(self, key: str, props: dict[str, Any]) -> dict[str, Any]:
        user = self.get_user(key)
        changes = self._validated("user", props, creating=False)
        new_upn = changes.get("userPrincipalName")
        if new_upn is not None and str(new_upn).lower() != str(user["userPrincipalName"]).lower():
            if str(new_upn).lower() in self.upn_index:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    "Another object with the same value for property userPrincipalName already "
                    "exists.",
                    details=[{"code": "ObjectConflict", "target": "userPrincipalName"}],
                )
            del self.upn_index[str(user["userPrincipalName"]).lower()]
            self.upn_index[str(new_upn).lower()] = user["id"]
        self._index_user(user, add=False)
        user.update(changes)
        self._index_user(user, add=True)
        self.user_seq[user["id"]] = self.bump()
        return user

    def delete_user(self, key: str) -> dict[str, Any]:
        user = self.get_user(key)
        del self.users[user["id"]]
        self._index_user(user, add=False)
        self.upn_index.pop(str(user["userPrincipalName"]).lower(), None)
        self.user_seq.pop(user["id"], None)
        self.removed[user["id"]] = self.bump()
        self.created_at.pop(user["id"], None)
        for members in self.members.values():
            members.pop(user["id"], None)
        return user

    # -- groups -----------------------------------------------------------------------------
    def get_group(self, key: str) -> dict[str, Any]:
        group = self.groups.get(key)
        if group is None:
            raise not_found(key)
        return group

    def create_group(self, props: dict[str, Any]) -> dict[str, Any]:
        for name in GROUP_REQUIRED_ON_CREATE:
            if props.get(name) is None:
                raise bad_request(f"Property '{name}' value is required but is empty or missing.")
        group = self._validated("group", props, creating=True)
        record: dict[str, Any] = {name: None for name in GROUP_PROPERTIES}
        record.update(groupTypes=[])
        record.update(group)
        record["id"] = str(uuid.uuid4())
        record["createdDateTime"] = utc_now_iso()
        self.groups[record["id"]] = record
        self.members[record["id"]] = {}
        return record

    def update_group(self, key: str, props: dict[str, Any]) -> dict[str, Any]:
        group = self.get_group(key)
        group.update(self._validated("group", props, creating=False))
        return group

    def delete_group(self, key: str) -> None:
        group = self.get_group(key)
        del self.groups[group["id"]]
        self.members.pop(group["id"], None)
        self.created_at.pop(group["id"], None)

    def object_exists(self, object_id: str) -> bool:
        return object_id in self.users or object_id in self.groups

    def add_member(self, group_id: str, member_id: str) -> None:
        self.get_group(group_id)
        if not self.object_exists(member_id):
            raise not_found(member_id)
        members = self.members[group_id]
        if member_id in members:
            raise bad_request(
                "One or more added object references already exist for the following modified "
                "properties: 'members'."
            )
        members[member_id] = None

    def remove_member(self, group_id: str, member_id: str) -> None:
        self.get_group(group_id)
        members = self.members[group_id]
        if member_id not in members:
            raise not_found(member_id)
        del members[member_id]

    def member_groups(self, user_id: str) -> list[dict[str, Any]]:
        return [self.groups[g] for g, m in self.members.items() if user_id in m]

    # -- helpers ------------------------------------------------------------------------------
    def _validated(self, kind: str, props: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        schema = USER_PROPERTIES if kind == "user" else GROUP_PROPERTIES
        read_only = USER_READ_ONLY if kind == "user" else GROUP_READ_ONLY
        type_name = "User" if kind == "user" else "Group"
        out: dict[str, Any] = {}
        for name, value in props.items():
            if name.startswith("@odata.") or "@odata." in name:
                continue
            if name not in schema:
                raise bad_request(
                    f"Property '{name}' does not exist as a declared property or extension "
                    "property."
                )
            if name in read_only:
                if creating and name == "id":
                    continue
                raise bad_request(
                    f"Property '{name}' is read-only and cannot be set.",
                )
            out[name] = check_value(schema[name], name, value, type_name)
        return out


class Directory:
    """All tenants' state; tenants spring into existence on first use."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantDirectory] = {}
        self._counter = itertools.count(1)

    def tenant(self, tenant_id: str) -> TenantDirectory:
        found = self.tenants.get(tenant_id)
        if found is None:
            found = self.tenants[tenant_id] = TenantDirectory(tenant_id)
        return found

    def reset(self) -> None:
        self.tenants.clear()

    def add_verified_domains(self, tenant_id: str, *domains: str) -> None:
        """Register verified domains of a tenant (``POST /users`` accepts only these)."""
        for domain in domains:
            if not isinstance(domain, str) or "." not in domain or "@" in domain:
                raise ValueError(f"verified domain {domain!r} of tenant {tenant_id}: not a domain")
            self.tenant(tenant_id).verified_domains.add(domain.lower())

    def secret_values(self) -> frozenset[str]:
        """Every password given to a created user (none may appear in a log)."""
        return frozenset(p for tenant in self.tenants.values() for p in tenant.passwords)

    def add_user(self, tenant_id: str, **props: Any) -> dict[str, Any]:
        """Create one user; missing required properties get plausible defaults."""
        n = next(self._counter)
        nickname = props.pop("mailNickname", None) or f"added{n:06d}"
        upn = props.pop("userPrincipalName", None) or f"{nickname}@contoso.example"
        base: dict[str, Any] = {
            "accountEnabled": True,
            "displayName": f"Added {n:06d}",
            "mailNickname": nickname,
            "userPrincipalName": upn,
            "passwordProfile": {"password": "Sandbox-Pa55!", "forceChangePasswordNextSignIn": True},
        }
        base.update(props)
        return self.tenant(tenant_id).create_user(base)

    def seed_users(
        self,
        tenant_id: str,
        n: int,
        *,
        leavers: int = 0,
        disabled: int = 0,
        domain: str = "contoso.example",
        department: str | None = "Sales",
        leave_date: str = "2024-01-31T17:00:00Z",
        prefix: str = "user",
    ) -> list[dict[str, Any]]:
        """Create ``n`` users fast. The first ``leavers`` have an employeeLeaveDateTime in the
        past (still enabled); the next ``disabled`` are already disabled. employeeId is
        ``E`` + a six-digit number, unique in the tenant."""
        tenant = self.tenant(tenant_id)
        created = []
        start = len(tenant.users) + len(tenant.removed)
        for i in range(n):
            number = start + i + 1
            nickname = f"{prefix}{number:06d}"
            props: dict[str, Any] = {
                "accountEnabled": not (leavers <= i < leavers + disabled),
                "displayName": f"{prefix.capitalize()} {number:06d}",
                "givenName": prefix.capitalize(),
                "surname": f"{number:06d}",
                "mailNickname": nickname,
                "userPrincipalName": f"{nickname}@{domain}",
                "mail": f"{nickname}@{domain}",
                "employeeId": f"E{number:06d}",
                "department": department,
                "passwordProfile": {"password": "Sandbox-Pa55!"},
            }
            if i < leavers:
                props["employeeLeaveDateTime"] = leave_date
            created.append(tenant.create_user(props))
        return created

    def add_group(self, tenant_id: str, display_name: str, **props: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "displayName": display_name,
            "mailEnabled": False,
            "mailNickname": props.pop("mailNickname", None) or display_name.replace(" ", ""),
            "securityEnabled": True,
        }
        base.update(props)
        return self.tenant(tenant_id).create_group(base)

    def seed_groups(self, tenant_id: str, n: int, prefix: str = "Group") -> list[dict[str, Any]]:
        return [self.add_group(tenant_id, f"{prefix} {i + 1:04d}") for i in range(n)]

    def add_member(self, tenant_id: str, group_id: str, member_id: str) -> None:
        self.tenant(tenant_id).add_member(group_id, member_id)

    def counts(self, tenant_id: str) -> dict[str, int]:
        tenant = self.tenant(tenant_id)
        return {
            "users": len(tenant.users),
            "enabledUsers": sum(1 for u in tenant.users.values() if u.get("accountEnabled")),
            "groups": len(tenant.groups),
            "memberships": sum(len(m) for m in tenant.members.values()),
            "deletedUsers": len(tenant.removed),
        }

    def snapshot(self, tenant_id: str | None = None, *, users: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tid, tenant in self.tenants.items():
            if tenant_id is not None and tid != tenant_id:
                continue
            entry: dict[str, Any] = {"counts": self.counts(tid)}
            if users:
                entry["users"] = [
                    {k: v for k, v in copy.deepcopy(u).items() if k not in USER_NEVER_RETURNED}
                    for u in tenant.users.values()
                ]
                entry["groups"] = [
                    {**copy.deepcopy(g), "members": list(tenant.members.get(g["id"], {}))}
                    for g in tenant.groups.values()
                ]
            out[tid] = entry
        return out
