"""@odata.id / @odata.bind must be URLs of the API itself: its host and its version.

learn.microsoft.com/graph/api/group-post-members and group-update show
``https://graph.microsoft.com/v1.0/directoryObjects/{id}``; against another cloud or base URL
the reference names that API (``{base}/directoryObjects/{id}``, ``/users/{id}``,
``/groups/{id}``). A reference to another host or version is refused with 400 (the docs show
no other form; the stricter reading).
"""

from __future__ import annotations

import pytest

from .conftest import Strict, graph_error


@pytest.mark.parametrize("entity_set", ["directoryObjects", "users", "groups", "DirectoryObjects"])
def test_references_on_this_api_are_accepted(strict: Strict, entity_set: str) -> None:
    directory = strict.sandbox.graph.directory
    group = directory.add_group(strict.tenant, "Parent")
    member = (
        directory.add_group(strict.tenant, "Child")
        if entity_set == "groups"
        else directory.seed_users(strict.tenant, 1)[0]
    )
    response = strict.http.post(
        f"/v1.0/groups/{group['id']}/members/$ref",
        json={"@odata.id": strict.ref(member["id"], entity_set)},
    )
    assert response.status_code == 204, response.text


def test_the_other_name_of_the_same_server_is_its_own_api(strict: Strict) -> None:
    directory = strict.sandbox.graph.directory
    group = directory.add_group(strict.tenant, "Parent")
    user = directory.seed_users(strict.tenant, 1)[0]
    alt = strict.sandbox.alt_url
    response = strict.http.post(
        f"{alt}/v1.0/groups/{group['id']}/members/$ref",
        json={"@odata.id": f"{alt}/v1.0/directoryObjects/{user['id']}"},
    )
    assert response.status_code == 204, response.text


@pytest.mark.parametrize(
    "template",
    [
        "https://graph.microsoft.com/v1.0/directoryObjects/{id}",  # another host
        "{api_host}/beta/directoryObjects/{id}",  # another version
        "{api}/devices/{id}",  # not a directory object set
        "{api}/directoryObjects/{id}/extra",
        "/v1.0/directoryObjects/{id}",  # relative
        "{id}",
        "{api}/directoryObjects/{id}?x=1",
    ],
)
def test_other_references_are_refused(strict: Strict, template: str) -> None:
    directory = strict.sandbox.graph.directory
    group = directory.add_group(strict.tenant, "Parent")
    user = directory.seed_users(strict.tenant, 1)[0]
    ref = template.format(id=user["id"], api=strict.api, api_host=strict.sandbox.url)
    url = f"/v1.0/groups/{group['id']}"
    added = strict.http.post(f"{url}/members/$ref", json={"@odata.id": ref})
    assert "Invalid URL format" in graph_error(added, 400, "Request_BadRequest")["message"]
    bound = strict.http.patch(url, json={"members@odata.bind": [ref]})
    assert "Invalid URL format" in graph_error(bound, 400, "Request_BadRequest")["message"]
    assert directory.counts(strict.tenant)["memberships"] == 0


@pytest.mark.parametrize("bind", [False, True])
def test_references_name_objects_by_id_not_by_user_principal_name(
    strict: Strict, bind: bool
) -> None:
    """The Add members and group-update pages reference members by object id only; a
    userPrincipalName in the URL is refused (undocumented there: the stricter reading)."""
    directory = strict.sandbox.graph.directory
    group = directory.add_group(strict.tenant, "ById")
    user = directory.seed_users(strict.tenant, 1)[0]
    by_upn = strict.ref(user["userPrincipalName"], "users")
    if bind:
        response = strict.http.patch(
            f"/v1.0/groups/{group['id']}", json={"members@odata.bind": [by_upn]}
        )
    else:
        response = strict.http.post(
            f"/v1.0/groups/{group['id']}/members/$ref", json={"@odata.id": by_upn}
        )
    error = graph_error(response, 400, "Request_BadRequest")
    assert "Invalid object identifier" in error["message"]
    by_id = strict.http.post(
        f"/v1.0/groups/{group['id']}/members/$ref", json={"@odata.id": strict.ref(user["id"])}
    )
    assert by_id.status_code == 204, by_id.text
