"""Job messages: each malformed message names what is wrong (pure, no I/O)."""

from __future__ import annotations

import json

import pytest

from shared.errors import InvalidMessageError
from shared.jobs.envelope import MAX_MESSAGE_BYTES, JobMessage, parse_message
from shared.jobs.operations import OperationsJob, check_allowed
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
        (json.dumps(good(extra=1)), "unknown message fields: 'extra'"),
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
    assert user_principal_name(person, "contoso.com") == "zoe.obrienukasz.e-42@contoso.com"
    assert user_principal_name(person, "contoso.com") == user_principal_name(
        dict(person), "contoso.com"
    )


# -- bounded parsing: any input ends in InvalidMessageError or a JobMessage, nothing else ----

ENVELOPE = json.dumps(good())


def _nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


NASTY: list[tuple[str, bytes | str]] = [
    ("empty bytes", b""),
    ("empty text", ""),
    ("whitespace", " \n\t "),
    ("null", b"null"),
    ("true", b"true"),
    ("number", b"1"),
    ("string", b'"x"'),
    ("NaN literal", b"NaN"),
    ("Infinity literal", b"-Infinity"),
    ("BOM then JSON", "\ufeff".encode() + ENVELOPE.encode()),
    ("UTF-16", ENVELOPE.encode("utf-16")),
    ("latin-1 byte", b'{"job": "\xe9"}'),
    ("overlong UTF-8", b'{"job": "\xc0\xaf"}'),
    ("encoded surrogate (CESU)", b'{"job": "\xed\xa0\x80"}'),
    ("lone surrogate in text", '{"version": 1, "job": "\ud800"}'),
    ("escaped lone surrogate", '{"version": 1, "job": "\\ud800"}'),
    ("NUL byte", b'{"version": 1\x00}'),
    ("control char in string", b'{"job": "a\x01b"}'),
    ("truncated", ENVELOPE[:-1]),
    ("trailing garbage", ENVELOPE + "x"),
    ("two objects", ENVELOPE + ENVELOPE),
    ("array 1000 deep", _nested(1000)),
    ("object 1000 deep", '{"a":' * 1000 + "1" + "}" * 1000),
    ("array 100000 deep", _nested(20_000)),
    ("payload 40 deep", json.dumps(good(payload={"x": json.loads(_nested(40))}))),
    ("unbalanced close", "]" * 100 + ENVELOPE),
    ("5000-digit int", '{"version": ' + "9" * 5000 + "}"),
    ("4301-digit int in payload", json.dumps(good())[:-1] + ', "n": ' + "1" * 4301 + "}"),
    ("41-digit int", '{"version": ' + "1" * 41 + "}"),
    ("long float", '{"version": 1.' + "0" * 200 + "}"),
    ("huge exponent", '{"version": 1e999999}'),
    ("negative zero", '{"version": -0}'),
    ("float version", json.dumps(good(version=1.0))),
    ("NaN version", '{"version": NaN}'),
    ("duplicate key", '{"version": 1, "version": 1}'),
    ("duplicate tenant", ENVELOPE[:-1] + ', "tenant": "' + OTHER + '"}'),
    ("duplicate key in payload", json.dumps(good())[:-3] + ', "leavers": []}}'),
    ("huge job name", json.dumps(good(job="j" * 30_000))),
    ("unknown key with surrogate", '{"version": 1, "\\udfff": 1}'),
    ("job is a list", json.dumps(good(job=["provision"]))),
    ("tenant is null", json.dumps(good(tenant=None))),
    ("correlation 129 chars", json.dumps(good(correlationId="c" * 129))),
    ("correlation with newline", json.dumps(good(correlationId="a\nb"))),
    ("dryRun is 0", json.dumps(good(dryRun=0))),
    ("payload is a string", json.dumps(good(payload="{}"))),
    ("over size as text", "{" + " " * MAX_MESSAGE_BYTES + "}"),
    ("over size by multibyte", '{"x": "' + "é" * (MAX_MESSAGE_BYTES // 2) + '"}'),
    ("only quotes", '"' * 1001),
    ("backslash run", '"' + "\\" * 5001),
    ("deep inside a string is fine but bad JSON", '"' + "[" * 5000),
]


@pytest.mark.parametrize(("name", "body"), NASTY, ids=[n for n, _ in NASTY])
def test_nasty_input_is_invalid_at_once_never_another_exception(
    name: str, body: bytes | str
) -> None:
    with pytest.raises(InvalidMessageError) as caught:
        parse(body)
    text = str(caught.value)
    assert 0 < len(text) < 400, name  # short and printable, whatever the input
    text.encode("utf-8")  # loggable: no lone surrogate echoed back


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (_nested(40), "deeper than 32"),
        ('{"version": ' + "9" * 5000 + "}", "more than 40"),
        ('{"version": 1, "version": 1}', "appears twice"),
        ('{"version": 1, "job": "\ud800"}', "lone surrogate"),
        (json.dumps(good(version=1.0)), "version 1.0 is not supported"),
        (json.dumps(good(job="j" * 30_000)), "unknown job 'jjjj"),
    ],
)
def test_bounds_name_what_is_wrong(body: str, fragment: str) -> None:
    with pytest.raises(InvalidMessageError, match=None) as caught:
        parse(body)
    assert fragment in str(caught.value)


def test_values_inside_the_payload_are_left_to_the_job() -> None:
    """NaN and escaped lone surrogates are valid JSON text: the envelope accepts them and
    the job refuses the one person or operation that carries them."""
    body = ENVELOPE[:-3] + ', {"employeeId": "E2", "department": NaN}, '
    body += '{"employeeId": "E3", "department": "\\ud800"}]}}'
    message = parse(body)
    leavers = message.payload["leavers"]
    assert leavers[1]["department"] != leavers[1]["department"]  # NaN
    assert leavers[2]["department"] == "\ud800"


def test_depth_and_numbers_within_bounds_are_accepted() -> None:
    payload = {"x": json.loads(_nested(25)), "n": int("9" * 40), "f": -1.5e300}
    message = parse(json.dumps(good(payload=payload)))
    assert message.payload["n"] == int("9" * 40)
    assert parse(ENVELOPE.encode()) == parse(ENVELOPE)
    # brackets inside strings do not count as nesting
    assert parse(json.dumps(good(correlationId="a", payload={"s": "[" * 5000}))).payload


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ({"id": "a", "method": "PATCH", "url": "/users/1", "body": {"x": float("nan")}}, "NaN"),
        ({"id": "a", "method": "PATCH", "url": "/users/1", "body": {"x": float("inf")}}, "NaN"),
        ({"id": "a", "method": "PATCH", "url": "/users/1", "body": {"x": "\ud800"}}, "surrogate"),
        ({"id": "a", "method": "PATCH", "url": "/users/1", "body": {"\udc00": 1}}, "surrogate"),
        ({"id": "a", "method": "PATCH", "url": "/users/1", "body": {1j: 1}}, "not JSON"),
        ({"id": "a\ud800", "method": "GET", "url": "/users/1"}, "'id' contains a lone"),
        ({"id": "a", "method": "GET", "url": "/users/1\x85"}, "'url' contains a control"),
        ({"id": "a", "method": "GET", "url": "/users/1", "headers": {"X": "a\nb"}}, "control"),
        ({"id": "a", "method": "GET", "url": "/users/1", "headers": {"X": 1}}, "of strings"),
        ({"id": "a", "method": "GET", "url": "/users/1", "Body": {}}, "unknown field"),
        ({"id": "a" * 101, "method": "GET", "url": "/users/1"}, "'id'"),
        ({"id": 7, "method": "GET", "url": "/users/1"}, "'id'"),
    ],
)
def test_an_operation_that_cannot_be_sent_strictly_fails_alone(
    item: dict[str, object], fragment: str
) -> None:
    problem = OperationsJob._check(item, ("GET", "PATCH"), ("/users/",))
    assert problem is not None
    assert fragment in problem
    problem.encode("utf-8")


def test_a_good_operation_passes() -> None:
    item = {"id": "a", "method": "PATCH", "url": "/users/1", "body": {"jobTitle": "工程师"}}
    assert OperationsJob._check(item, ("GET", "PATCH"), ("/users/",)) is None
