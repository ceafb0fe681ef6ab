"""How users and groups are rendered in answers: the selected (or default) properties, and
``$expand=memberOf``."""

from __future__ import annotations

from typing import Any

from .directory import TenantDirectory
from .schema import GROUP_DEFAULT_SELECT, USER_DEFAULT_SELECT

EXPAND_LIMIT = 20  # related objects returned by $expand


def shape_user(
    user: dict[str, Any],
    select: list[str] | None,
    tenant: TenantDirectory | None = None,
    expand: str | None = None,
) -> dict[str, Any]:
    names = select if select is not None else list(USER_DEFAULT_SELECT)
    out = {name: user.get(name) for name in names}
    if expand == "memberOf" and tenant is not None:
        out["memberOf"] = [
            {
                "@odata.type": "#microsoft.graph.group",
                "id": g["id"],
                "displayName": g["displayName"],
            }
            # $expand returns at most 20 related objects and no next link: "$expand ...
            # only returns up to 20 objects" (https://learn.microsoft.com/graph/query-parameters
            # #expand-parameter); a caller must page /users/{id}/memberOf for the rest.
            for g in tenant.member_groups(user["id"])[:EXPAND_LIMIT]
        ]
    return out


def shape_group(group: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    names = select if select is not None else list(GROUP_DEFAULT_SELECT)
    return {name: group.get(name) for name in names}
