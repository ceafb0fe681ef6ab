"""``/groups``: list, get, create, update (with ``members@odata.bind``) and delete.

Members and their references live in ``members.py``.
"""

from __future__ import annotations

from typing import Any

from .context import GraphContext
from .errors import bad_request, forbidden, not_found
from .members import ALREADY_MEMBERS, NOT_REPLICATED, bound_ids
from .odata import parse_select
from .operation import Caller, Operation, Result, body_object, context_url, json_result
from .paging import Pager
from .permissions import WRITE_GROUPS
from .query import compile_filter
from .schema import GROUP_PROPERTIES
from .shaping import shape_group


def group_select(options: dict[str, str]) -> list[str] | None:
    if "$select" not in options:
        return None
    return parse_select(options["$select"], GROUP_PROPERTIES, "Group")


class GroupHandlers:
    def __init__(self, ctx: GraphContext, pager: Pager) -> None:
        self.ctx = ctx
        self.pager = pager

    def list_groups(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        ctx = self.ctx
        tenant = ctx.tenant(caller)
        state = self.pager.list_state(op, caller, options, "groups", lambda: group_select(options))
        predicate = compile_filter(
            ctx.config, op, state.filter, GROUP_PROPERTIES, "Group", state.count, caller
        )
        matching = [
            g for g in tenant.groups.values() if predicate(g) and ctx.replicated(tenant, g["id"])
        ]
        page, next_link = self.pager.page_of(op, matching, state, "groups")
        body: dict[str, Any] = {"@odata.context": context_url(op, "groups", state.select)}
        if state.count:
            body["@odata.count"] = len(matching)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = [shape_group(g, state.select) for g in page]
        return json_result(200, body)

    def get_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        select = group_select(options)
        group = self.ctx.visible_group(self.ctx.tenant(caller), args[0])
        body = {"@odata.context": context_url(op, "groups", select, entity=True)}
        body.update(shape_group(group, select))
        return json_result(200, body)

    def create_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        body = dict(body_object(op))
        binds = body.pop("members@odata.bind", None)
        tenant = self.ctx.tenant(caller)
        member_ids = bound_ids(self.ctx, op, tenant, binds)
        group = tenant.create_group(body)
        tenant.created_at[group["id"]] = self.ctx.clock()
        for member_id in member_ids:
            tenant.members[group["id"]][member_id] = None
        out = {"@odata.context": context_url(op, "groups", None, entity=True)}
        out.update(shape_group(group, None))
        return json_result(201, out)

    def update_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        """PATCH /groups/{id}; ``members@odata.bind`` adds up to 20 members in this one write,
        all or nothing (learn.microsoft.com/graph/api/group-update, example "Add multiple
        members to a group in a single request")."""
        ctx = self.ctx
        body = dict(body_object(op))
        binds = body.pop("members@odata.bind", None)
        tenant = ctx.tenant(caller)
        group = tenant.get_group(args[0])
        if not ctx.replicated(tenant, group["id"]):
            if binds is not None:
                raise bad_request(NOT_REPLICATED)
            raise not_found(args[0])
        if body and not caller.roles & WRITE_GROUPS:
            raise forbidden()
        member_ids = bound_ids(ctx, op, tenant, binds)
        existing = tenant.members[group["id"]]
        if any(m in existing for m in member_ids):
            raise bad_request(ALREADY_MEMBERS)
        if body:
            tenant.update_group(group["id"], body)
        for member_id in member_ids:
            existing[member_id] = None
            ctx.stats.member_adds[f"{caller.tenant}/{group['id']}/{member_id}"] += 1
        return Result(204)

    def delete_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        self.ctx.tenant(caller).delete_group(args[0])
        return Result(204)
