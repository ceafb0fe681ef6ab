"""POST /users: the first password must meet Entra ID's default password policy.

learn.microsoft.com/entra/identity/authentication/concept-password-policies: 8 to 256
characters of A-Z, a-z, 0-9 and the listed symbols (blank space included, Unicode refused);
three of the four classes lower case, upper case, digit, symbol. Otherwise 400.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Strict

POLICY = (
    "The specified password does not comply with password complexity requirements. Please "
    "provide a different password."
)


def create(strict: Strict, password: object) -> tuple[int, dict[str, Any]]:
    body = {
        "accountEnabled": True,
        "displayName": "x",
        "mailNickname": "x",
        "userPrincipalName": "pw@contoso.example",
        "passwordProfile": {"password": password, "forceChangePasswordNextSignIn": True},
    }
    response = strict.http.post("/v1.0/users", json=body)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "password",
    [
        "abcDEF12",  # lower, upper, digit
        "abcdef1!",  # lower, digit, symbol
        "ABCDEF1!",  # upper, digit, symbol
        "abc DEF!",  # blank space is a symbol
        "Aa1" + "x" * 253,  # 256
    ],
)
def test_passwords_meeting_the_policy_are_accepted(strict: Strict, password: str) -> None:
    status, body = create(strict, password)
    assert status == 201, body


@pytest.mark.parametrize(
    "password",
    [
        "aB1!aB1",  # 7 characters
        "Aa1" + "x" * 254,  # 257
        "abcdefgh12",  # two classes
        "ABCDEFGH!!",  # two classes
        "abcdéFG1!",  # Unicode
        "abcDEF12\u00a0",  # a non-ASCII space
    ],
)
def test_passwords_below_the_policy_are_refused(strict: Strict, password: str) -> None:
    status, body = create(strict, password)
    assert status == 400
    error = body["error"]
    assert error["code"] == "Request_BadRequest"
    assert error["message"] == POLICY
    assert strict.sandbox.graph.directory.counts(strict.tenant)["users"] == 0
