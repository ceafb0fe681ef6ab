"""Group members and the references that name them: ``/groups/{id}/members``,
``members/$ref`` (add), ``members/{id}/$ref`` (remove) and ``members@odata.bind``.

A reference must name this API (``validation.reference_id``) and an object that has
replicated; otherwise Graph answers 400 (learn.microsoft.com/graph/api/group-post-members).
"""

from __future__ import annotations

from typing import Any

from .context import GraphContext
from .directory import TenantDirectory
from .errors import bad_request, not_found
from .operation import Caller, Operation, Result, body_object, json_result
from .paging import Pager
from .query import compile_filter, user_select
from .schema import USER_PROPERTIES
from .shaping import shape_group, shape_user
from .validation import reference_id

# Graph's answer when a reference names an object that does not exist yet (or not yet in the
# replica that serves the request): "Add members" (learn.microsoft.com/graph/api/
# group-post-members) and "Designing for eventual consistency" in the Entra docs.
NOT_REPLICATED = "The source resource object or one of the objects being referenced do not exist."
ALREADY_MEMBERS = (
    "One or more added object references already exist for the following modified properties: "
    "'members'."
)


def referenced_id(ctx: GraphContext, tenant: TenantDirectory, kind: str, key: str) -> str | None:
    """The id of a referenced, replicated object (``users`` also by UPN), else None."""
    found: dict[str, Any] | None = None
    if kind in ("users", "directoryObjects"):
        found = tenant.find_user(key) if kind == "users" else tenant.users.get(key)
    if found is None and kind in ("groups", "directoryObjects"):
        found = tenant.groups.get(key)
    if found is None or not ctx.replicated(tenant, found["id"]):
        return None
    return str(found["id"])


def bound_ids(ctx: GraphContext, op: Operation, tenant: TenantDirectory, binds: Any) -> list[str]:
    """Object ids of a ``members@odata.bind`` list; 400 for any that is not there yet."""
    if binds is None:
        return []
    if not isinstance(binds, list):
        raise bad_request("Invalid URL format specified in @odata.bind for members.")
    limit = ctx.config.max_members_bind
    if len(binds) > limit:
        # Graph's limit (group-update); the wording is ours.
        raise bad_request(
            f"The request contains {len(binds)} member references, more than "
            f"{limit}; add members in chunks of at most {limit}."
        )
    ids: list[str] = []
    for ref in binds:
        kind, key = reference_id(ref, op.api_base, "@odata.bind for members")
        member_id = referenced_id(ctx, tenant, kind, key)
        if member_id is None:
            raise bad_request(NOT_REPLICATED)
        if member_id in ids:
            # The docs are silent on a member named twice: refused (the stricter reading).
            raise bad_request(ALREADY_MEMBERS)
        ids.append(member_id)
    return ids


class MemberHandlers:
    def __init__(self, ctx: GraphContext, pager: Pager) -> None:
        self.ctx = ctx
        self.pager = pager

    def list_members(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        ctx = self.ctx
        tenant = ctx.tenant(caller)
        group = ctx.visible_group(tenant, args[0])
        kind = f"members:{group['id']}"
        state = self.pager.list_state(
            op, caller, options, kind, lambda: user_select(ctx.config, caller, options)
        )
        predicate = compile_filter(
            ctx.config, op, state.filter, USER_PROPERTIES, "User", state.count, caller
        )
        objects: list[dict[str, Any]] = []
        for member_id in tenant.members[group["id"]]:
            obj = tenant.users.get(member_id) or tenant.groups.get(member_id)
            if obj is not None and predicate(obj):
                objects.append(obj)
        page, next_link = self.pager.page_of(op, objects, state, f"groups/{group['id']}/members")
        body: dict[str, Any] = {
            "@odata.context": f"{op.api_base}/$metadata#directoryObjects",
        }
        if state.count:
            body["@odata.count"] = len(objects)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = [self.shape_member(tenant, obj, state.select) for obj in page]
        return json_result(200, body)

    @staticmethod
    def shape_member(
        tenant: TenantDirectory, obj: dict[str, Any], select: list[str] | None
    ) -> dict[str, Any]:
        """A member as a directoryObject: a user (with ``$select``) or a nested group."""
        if obj["id"] in tenant.users:
            return {"@odata.type": "#microsoft.graph.user", **shape_user(obj, select)}
        return {"@odata.type": "#microsoft.graph.group", **shape_group(obj, None)}

    def add_member(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        """POST /groups/{id}/members/$ref (learn.microsoft.com/graph/api/group-post-members).

        A group or member that does not exist at all answers 404; one created less than
        ``replication_delay`` ago answers Graph's 400 "... do not exist." (retry later)."""
        ctx = self.ctx
        body = body_object(op)
        ref = body.get("@odata.id")
        if ref is None:
            raise bad_request("Property '@odata.id' value is required but is empty or missing.")
        kind, key = reference_id(ref, op.api_base, "@odata.id")
        tenant = ctx.tenant(caller)
        group = tenant.get_group(args[0])
        if not ctx.replicated(tenant, group["id"]):
            raise bad_request(NOT_REPLICATED)
        member_id = referenced_id(ctx, tenant, kind, key)
        if member_id is None:
            exists = tenant.find_user(key) if kind == "users" else None
            if exists is None and not tenant.object_exists(key):
                raise not_found(key)
            raise bad_request(NOT_REPLICATED)
        tenant.add_member(group["id"], member_id)
        ctx.stats.member_adds[f"{caller.tenant}/{args[0]}/{member_id}"] += 1
        return Result(204)

    def remove_member(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.ctx.tenant(caller)
        tenant.remove_member(tenant.get_group(args[0])["id"], args[1])
        self.ctx.stats.member_removes[f"{caller.tenant}/{args[0]}/{args[1]}"] += 1
        return Result(204)
