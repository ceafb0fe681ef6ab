"""POST /users: the userPrincipalName's rules.

learn.microsoft.com/graph/api/resources/user (userPrincipalName) and
learn.microsoft.com/graph/api/user-post-users: ``alias@domain``; the domain one of the
tenant's verified domains; the alias of ``A-Z a-z 0-9 ' . - _ ! # ^ ~`` only, no leading or
trailing period, no two periods in a row, at most 64 characters. Otherwise 400.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import PASSWORD, Strict, graph_error

INVALID = "Property userPrincipalName is invalid."
UNVERIFIED = (
    "The domain portion of the userPrincipalName property is invalid. You must use one of the "
    "verified domain names in your organization."
)


def create(strict: Strict, upn: str) -> tuple[int, dict[str, Any]]:
    body = {
        "accountEnabled": True,
        "displayName": "x",
        "mailNickname": "x",
        "userPrincipalName": upn,
        "passwordProfile": {"password": PASSWORD},
    }
    response = strict.http.post("/v1.0/users", json=body)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "upn",
    [
        "ada.lovelace@contoso.example",
        "o'brien-x_1!#^~@contoso.example",
        "ADA@CONTOSO.EXAMPLE",
        f"{'a' * 64}@contoso.example",
        "ada@contoso.onmicrosoft.com",
    ],
)
def test_valid_names_on_verified_domains_are_accepted(strict: Strict, upn: str) -> None:
    status, body = create(strict, upn)
    assert status == 201, body


@pytest.mark.parametrize(
    "upn",
    [
        "zoë@contoso.example",
        "josé.garcía@contoso.example",
        "a b@contoso.example",
        "a+b@contoso.example",
        ".ada@contoso.example",
        "ada.@contoso.example",
        "ada..lovelace@contoso.example",
        f"{'a' * 65}@contoso.example",
        "ada",
        "ada@x@contoso.example",
        "@contoso.example",
    ],
)
def test_invalid_names_are_refused(strict: Strict, upn: str) -> None:
    status, body = create(strict, upn)
    assert status == 400
    assert body["error"]["code"] == "Request_BadRequest"
    assert body["error"]["message"] == INVALID


@pytest.mark.parametrize(
    "upn", ["ada@fabrikam.example", "ada@example.com", "ada@contoso.example.org"]
)
def test_unverified_domains_are_refused(strict: Strict, upn: str) -> None:
    status, body = create(strict, upn)
    assert status == 400
    assert body["error"]["message"] == UNVERIFIED


def test_verified_domains_are_per_tenant(strict: Strict) -> None:
    directory = strict.sandbox.graph.directory
    assert directory.tenant(strict.tenant).verified_domains == {
        "contoso.example",
        "contoso.onmicrosoft.com",
    }
    assert directory.tenant(strict.seed.second_tenant_id).verified_domains == {
        "fabrikam.onmicrosoft.com"
    }


def test_renaming_follows_the_same_rules(strict: Strict) -> None:
    user = strict.sandbox.graph.directory.seed_users(strict.tenant, 1)[0]
    url = f"/v1.0/users/{user['id']}"
    refused = strict.http.patch(url, json={"userPrincipalName": "ada@elsewhere.example"})
    assert graph_error(refused, 400, "Request_BadRequest")["message"] == UNVERIFIED
    accepted = strict.http.patch(url, json={"userPrincipalName": "ada.renamed@contoso.example"})
    assert accepted.status_code == 204
