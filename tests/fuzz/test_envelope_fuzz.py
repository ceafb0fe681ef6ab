"""Fuzzing the queue message envelope: whatever arrives, ``parse_message`` either returns a
message or raises InvalidMessageError naming the problem (the handler then completes the
message at once). Any other exception would be retried five times and poisoned."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shared.errors import InvalidMessageError
from shared.jobs.envelope import MAX_MESSAGE_BYTES, JobMessage, parse_message
from tests.fuzz.strategies import FAST, dumps_lenient, json_values, nested, text_values

TENANT = "11111111-2222-3333-4444-555555555555"
JOBS = ("provision", "operations")


def parse(body: bytes | str) -> JobMessage | None:
    """The message, or None after checking that the refusal says what is wrong."""
    error: InvalidMessageError
    try:
        return parse_message(body, jobs=JOBS, allowed_tenants=(TENANT,))
    except InvalidMessageError as exc:
        error = exc
    assert str(error), "an InvalidMessageError must say what is wrong"
    return None


def envelope(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": 1,
        "job": "provision",
        "tenant": TENANT,
        "correlationId": "fuzz-1",
        "dryRun": False,
        "payload": {},
    }
    base.update(fields)
    return base


@FAST
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\xff\xfe")
@example(b"\x00")
@example(b'{"version": 1')
def test_any_bytes_are_parsed_or_invalid(body: bytes) -> None:
    parse(body)


@FAST
@given(st.text(max_size=2048))
def test_any_text_is_parsed_or_invalid(body: str) -> None:
    try:
        encoded: bytes | str = body.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: hand the str itself to the parser
        encoded = body
    parse(encoded)


@FAST
@given(
    field=st.sampled_from(["version", "job", "tenant", "correlationId", "dryRun", "payload"]),
    value=json_values,
)
def test_wrong_types_in_each_field_are_invalid_or_accepted(field: str, value: Any) -> None:
    text = dumps_lenient(envelope(**{field: value}))
    message = parse(text)
    if message is not None:  # whatever was accepted has the declared types
        assert isinstance(message.job, str)
        assert message.job in JOBS
        assert isinstance(message.correlation_id, str)
        assert isinstance(message.dry_run, bool)
        assert message.version == 1


@FAST
@given(extra=st.dictionaries(text_values, json_values, min_size=1, max_size=3))
def test_unknown_fields_are_invalid(extra: dict[str, Any]) -> None:
    known = {"version", "job", "tenant", "correlationId", "dryRun", "payload"}
    fields = {k: v for k, v in extra.items() if k not in known}
    if not fields:
        return
    text = dumps_lenient({**envelope(), **fields})
    assert parse(text) is None


@FAST
@given(payload=st.dictionaries(text_values, json_values, max_size=5))
def test_any_payload_object_passes_the_envelope(payload: dict[str, Any]) -> None:
    text = dumps_lenient(envelope(payload=payload))
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        return
    assert parse(text) is not None


@FAST
@given(size=st.integers(min_value=MAX_MESSAGE_BYTES + 1, max_value=MAX_MESSAGE_BYTES + 4096))
def test_oversized_messages_are_invalid(size: int) -> None:
    text = json.dumps(envelope(payload={"pad": "x" * size}))
    with pytest.raises(InvalidMessageError, match="byte"):
        parse_message(text, jobs=JOBS, allowed_tenants=(TENANT,))


# -- bounded parsing: input that can never succeed must not use every retry ------------------


@FAST
@given(depth=st.integers(min_value=1_000, max_value=12_000), opener=st.sampled_from("[{"))
def test_deep_nesting_is_invalid(depth: int, opener: str) -> None:
    inner = nested(depth, opener)
    text = json.dumps(envelope()).replace('"payload": {}', f'"payload": {{"x": {inner}}}')
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        return
    assert parse(text) is None


@FAST
@given(digits=st.integers(min_value=4_301, max_value=20_000), where=st.sampled_from(["v", "p"]))
def test_huge_integers_are_invalid(digits: int, where: str) -> None:
    number = "7" * digits
    if where == "v":
        text = json.dumps(envelope()).replace('"version": 1', f'"version": {number}')
    else:
        text = json.dumps(envelope()).replace('"payload": {}', f'"payload": {{"n": {number}}}')
    assert parse(text) is None
