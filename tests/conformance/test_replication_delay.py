"""Replication delay: a new user or group is not readable or referenceable for a while.

Entra ID is eventually consistent ("Designing for eventual consistency for Microsoft Entra";
learn.microsoft.com/graph/api/group-post-members: after creating an object, adding it "may
fail ... retry after a brief delay"). Within ``replication_delay`` seconds of its create (the
directory API's clock): GET by id answers 404, lists and $filter skip it, and members/$ref or
members@odata.bind naming it, as member or as group, answer 400 "The source resource object or
one of the objects being referenced do not exist." The create response returns the object.
"""

from __future__ import annotations

from sandbox.graph import GraphConfig

from .conftest import Strict, StrictFactory, graph_error

NOT_REPLICATED = "The source resource object or one of the objects being referenced do not exist."


def test_the_default_delay_is_on_and_short() -> None:
    assert 0 < GraphConfig().replication_delay <= 2


def test_a_new_user_is_invisible_until_replicated(strict: Strict) -> None:
    created = strict.new_user("ada.new", employeeId="E42")
    assert created.status_code == 201
    user_id = created.json()["id"]
    assert created.json()["userPrincipalName"] == "ada.new@contoso.example"

    graph_error(strict.http.get(f"/v1.0/users/{user_id}"), 404, "Request_ResourceNotFound")
    graph_error(
        strict.http.get("/v1.0/users/ada.new@contoso.example"), 404, "Request_ResourceNotFound"
    )
    listed = strict.http.get("/v1.0/users", params={"$filter": "employeeId eq 'E42'"})
    assert listed.status_code == 200
    assert listed.json()["value"] == []

    strict.clock.advance(GraphConfig().replication_delay)
    assert strict.http.get(f"/v1.0/users/{user_id}").status_code == 200
    listed = strict.http.get("/v1.0/users", params={"$filter": "employeeId eq 'E42'"})
    assert [u["id"] for u in listed.json()["value"]] == [user_id]


def test_a_new_user_cannot_be_added_to_a_group_until_replicated(strict: Strict) -> None:
    group = strict.sandbox.graph.directory.add_group(strict.tenant, "Staff")
    user_id = strict.new_user("bob.new").json()["id"]
    url = f"/v1.0/groups/{group['id']}"
    add = strict.http.post(f"{url}/members/$ref", json={"@odata.id": strict.ref(user_id)})
    assert graph_error(add, 400, "Request_BadRequest")["message"] == NOT_REPLICATED
    bind = strict.http.patch(url, json={"members@odata.bind": [strict.ref(user_id, "users")]})
    assert graph_error(bind, 400, "Request_BadRequest")["message"] == NOT_REPLICATED
    assert strict.sandbox.graph.directory.counts(strict.tenant)["memberships"] == 0

    strict.clock.advance(1.0)
    add = strict.http.post(f"{url}/members/$ref", json={"@odata.id": strict.ref(user_id)})
    assert add.status_code == 204
    assert strict.sandbox.graph.directory.counts(strict.tenant)["memberships"] == 1


def test_nothing_can_be_added_to_a_new_group_until_replicated(strict: Strict) -> None:
    user = strict.sandbox.graph.directory.seed_users(strict.tenant, 1)[0]
    created = strict.new_group("NewStaff")
    assert created.status_code == 201
    url = f"/v1.0/groups/{created.json()['id']}"
    graph_error(strict.http.get(url), 404, "Request_ResourceNotFound")
    listed = strict.http.get("/v1.0/groups", params={"$filter": "displayName eq 'NewStaff'"})
    assert listed.json()["value"] == []
    add = strict.http.post(f"{url}/members/$ref", json={"@odata.id": strict.ref(user["id"])})
    assert graph_error(add, 400, "Request_BadRequest")["message"] == NOT_REPLICATED
    bind = strict.http.patch(url, json={"members@odata.bind": [strict.ref(user["id"])]})
    assert graph_error(bind, 400, "Request_BadRequest")["message"] == NOT_REPLICATED

    strict.clock.advance(1.0)
    assert strict.http.get(url).status_code == 200
    bind = strict.http.patch(url, json={"members@odata.bind": [strict.ref(user["id"])]})
    assert bind.status_code == 204


def test_an_object_that_never_existed_is_still_404(strict: Strict) -> None:
    group = strict.sandbox.graph.directory.add_group(strict.tenant, "Staff")
    missing = strict.http.post(
        f"/v1.0/groups/{group['id']}/members/$ref",
        json={"@odata.id": strict.ref("00000000-0000-0000-0000-000000000000")},
    )
    graph_error(missing, 404, "Request_ResourceNotFound")


def test_zero_turns_it_off(strict_factory: StrictFactory) -> None:
    strict = strict_factory(GraphConfig(replication_delay=0.0))
    user_id = strict.new_user("cy.new").json()["id"]
    assert strict.http.get(f"/v1.0/users/{user_id}").status_code == 200
