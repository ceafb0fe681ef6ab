"""Job messages: each malformed message names what is wrong (pure, no I/O)."""

from __future__ import annotations

import json

import pytest

from shared.errors import InvalidMessageError
from shared.jobs.envelope import MAX_MESSAGE_BYTES, JobMessage, parse_message
from shared.jobs.operations import check_allowed
from shared.jobs.provision import user_principal_name

HOME = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
JOBS = ("provision", "operations")


def parse(body: bytes | str) -> JobMessage:
    return parse_message(body, jobs=JOBS, allowed_tenants=(HOME,))


def good(**changes: object) -> dict[str, object]:
    message: dict[str, object] = {
        "version": 1,
        "job": "provision",
        "tenant": HOME,
        "correlationId": "hr-2026-11-23.001",
        "payload": {"leavers": [{"employeeId": "E1"}]},
    }
    message.update(changes)
    return {k: v for k, v in message.items() if v != "<drop>"}


def test_round_trip() -> None:
    message = JobMessage.new("provision", HOME, {"joiners": []}, correlation_id="abc")
    parsed = parse(message.to_json())
    assert parsed == message
    assert parse(json.dumps(good(tenant=HOME.upper()))).tenant == HOME


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps(good(version=2)), "version 2 is not supported"),
        (json.dumps(good(version=True)), "version True is not supported"),
        (json.dumps(good(version="<drop>")), "version None"),
        (json.dumps(good(job="format-disk")), "unknown job 'format-disk'"),
        (json.dumps(good(tenant=OTHER)), "not in DAEMON_ALLOWED_TENANTS"),
        (json.dumps(good(tenant="not a tenant")), "is not a tenant id"),
        (json.dumps(good(tenant=7)), "'tenant' must be"),
        (json.dumps(good(correlationId="<drop>")), "'correlationId'"),
        (json.dumps(good(correlationId="a b")), "'correlationId'"),
        (json.dumps(good(dryRun="yes")), "'dryRun'"),
        (json.dumps(good(payload=[1])), "'payload' must be a JSON object"),
        (json.dumps(good(extra=1)), "unknown message fields: extra"),
        (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "over the"),
    ],
)
def test_invalid_messages(body: bytes | str, fragment: str) -> None:
    with pytest.raises(InvalidMessageError) as caught:
        parse(body)
    assert fragment in str(caught.value)


def test_oversized_payload_cannot_be_built() -> None:
    huge = {"joiners": [{"employeeId": f"E{i}", "givenName": "x" * 100} for i in range(500)]}
    with pytest.raises(ValueError, match="split"):
        JobMessage.new("provision", HOME, huge).to_json()


@pytest.mark.parametrize(
    ("method", "url", "fragment"),
    [
        ("DELETE", "/users/1", "DAEMON_OPERATIONS_ALLOWED_METHODS"),
        ("GET", "https://evil.example/users", "only relative"),
        ("GET", "//evil.example/users", "only relative"),
        ("GET", "/users/../applications", "normal form"),
        ("GET", "/users/%2e%2e/applications", "normal form"),
        ("GET", "/applications/1", "DAEMON_OPERATIONS_ALLOWED_PATHS"),
        ("PATCH", "/users//x", "normal form"),
    ],
)
def test_operations_allow_list(method: str, url: str, fragment: str) -> None:
    problem = check_allowed(method, url, ("GET", "PATCH"), ("/users/", "/groups/"))
    assert problem is not None
    assert fragment in problem


def test_operations_allow_list_accepts() -> None:
    assert check_allowed("patch", "/users/1?$select=id", ("GET", "PATCH"), ("/users/",)) is None
    assert check_allowed("GET", "users/1", ("GET",), ("/users/",)) is None


def test_user_principal_name_is_deterministic_ascii() -> None:
    person = {"givenName": "Zoë", "surname": "O'Brien-Łukasz", "employeeId": "E-42"}
    assert user_principal_name(person, "contoso.com") == "zoe.obrienukasz.e42@contoso.com"
    assert user_principal_name(person, "contoso.com") == user_principal_name(
        dict(person), "contoso.com"
    )
