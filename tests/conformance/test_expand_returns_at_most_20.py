"""$expand returns at most 20 related objects, with no next link.

learn.microsoft.com/graph/query-parameters (expand parameter): "$expand ... only returns up to
20 objects". A user in 25 groups read with ``$expand=memberOf`` shows 20 of them; the full list
needs ``GET /users/{id}/memberOf`` (paged).
"""

from __future__ import annotations

from .conftest import Strict


def test_expand_member_of_is_capped_at_20(strict: Strict) -> None:
    directory = strict.sandbox.graph.directory
    (user,) = directory.seed_users(strict.tenant, 1)
    groups = [directory.add_group(strict.tenant, f"G{i}") for i in range(25)]
    for group in groups:
        directory.add_member(strict.tenant, group["id"], user["id"])
    expanded = strict.http.get(
        f"/v1.0/users/{user['id']}", params={"$select": "id", "$expand": "memberOf($select=id)"}
    )
    assert expanded.status_code == 200, expanded.text
    assert len(expanded.json()["memberOf"]) == 20
    assert "memberOf@odata.nextLink" not in expanded.json()
    listed: list[str] = []
    url: str | None = f"/v1.0/users/{user['id']}/memberOf"
    while url:
        page = strict.http.get(url)
        assert page.status_code == 200, page.text
        listed.extend(g["id"] for g in page.json()["value"])
        url = page.json().get("@odata.nextLink")
    assert sorted(listed) == sorted(g["id"] for g in groups)


def test_expand_below_the_cap_is_complete(strict: Strict) -> None:
    directory = strict.sandbox.graph.directory
    (user,) = directory.seed_users(strict.tenant, 1)
    groups = [directory.add_group(strict.tenant, f"H{i}") for i in range(3)]
    for group in groups:
        directory.add_member(strict.tenant, group["id"], user["id"])
    expanded = strict.http.get(
        f"/v1.0/users/{user['id']}", params={"$expand": "memberOf($select=id)"}
    )
    assert sorted(g["id"] for g in expanded.json()["memberOf"]) == sorted(g["id"] for g in groups)
