"""StateStore against a real Azurite: checkpoints, run records, the idempotency ledger; and
unit tests of its error translation and value splitting against a fake table service."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NoReturn, cast

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from sandbox.azurite import Azurite
from shared.storage import (
    Checkpoint,
    RunRecord,
    StateConflictError,
    StateStore,
    StateStoreError,
    StateValueTooLargeError,
    desanitize_key,
    sanitize_key,
)
from shared.storage.entities import MAX_PROPERTY_UNITS, get_text, put_text

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

TENANT = "contoso.onmicrosoft.com"


@pytest.fixture
def store(azurite: Azurite) -> Iterator[StateStore]:
    env = {"AzureWebJobsStorage": azurite.connection_string}
    store = StateStore.from_env(env, table_prefix=f"t{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        store.close()


async def test_checkpoint_round_trip(store: StateStore) -> None:
    assert await store.get_checkpoint("sweep", TENANT) is None
    written = await store.put_checkpoint(
        Checkpoint(
            job="sweep",
            tenant=TENANT,
            delta_link="https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc",
            phase="apply",
            cursor="page-3",
            data={"chunks": 4, "dry_run": False},
        )
    )
    assert written.etag
    read = await store.get_checkpoint("sweep", TENANT)
    assert read is not None
    assert read == written
    assert read.etag == written.etag
    assert read.data == {"chunks": 4, "dry_run": False}
    assert read.updated_at is not None
    assert read.updated_at.tzinfo is not None
    assert "deltatoken" not in repr(read)  # delta links carry opaque tokens


async def test_conflicting_checkpoint_writes_are_refused(store: StateStore) -> None:
    first = await store.put_checkpoint(Checkpoint(job="sweep", tenant=TENANT, phase="plan"))
    with pytest.raises(StateConflictError, match="already exists"):
        await store.put_checkpoint(Checkpoint(job="sweep", tenant=TENANT, phase="plan"))

    # Two runs read the same checkpoint; the second writer loses.
    a = await store.get_checkpoint("sweep", TENANT)
    b = await store.get_checkpoint("sweep", TENANT)
    assert a is not None
    assert b is not None
    assert a.etag == first.etag
    a2 = await store.put_checkpoint(dataclasses.replace(a, phase="apply"))
    assert a2.etag != a.etag
    with pytest.raises(StateConflictError, match="changed since it was read"):
        await store.put_checkpoint(dataclasses.replace(b, phase="done"))
    current = await store.get_checkpoint("sweep", TENANT)
    assert current is not None
    assert current.phase == "apply"

    forced = await store.put_checkpoint(dataclasses.replace(b, phase="reset"), force=True)
    current = await store.get_checkpoint("sweep", TENANT)
    assert current is not None
    assert (current.phase, current.etag) == ("reset", forced.etag)

    await store.delete_checkpoint("sweep", TENANT)
    with pytest.raises(StateConflictError, match="deleted"):
        await store.put_checkpoint(current)


async def test_long_delta_links_are_split_and_rejoined(store: StateStore) -> None:
    link = "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=" + "x" * 100_000
    cursor = "😀" * 20_000  # 40,000 UTF-16 code units: more than one property holds
    await store.put_checkpoint(Checkpoint(job="sweep", tenant=TENANT, delta_link=link))
    read = await store.get_checkpoint("sweep", TENANT)
    assert read is not None
    assert read.delta_link == link
    written = await store.put_checkpoint(dataclasses.replace(read, cursor=cursor, delta_link=""))
    read = await store.get_checkpoint("sweep", TENANT)
    assert read is not None
    assert (read.cursor, read.delta_link, read.etag) == (cursor, "", written.etag)


async def test_values_too_large_for_an_entity_are_refused(store: StateStore) -> None:
    with pytest.raises(StateValueTooLargeError, match="DeltaLink is 500000 characters"):
        await store.put_checkpoint(Checkpoint(job="sweep", tenant=TENANT, delta_link="x" * 500_000))
    assert await store.get_checkpoint("sweep", TENANT) is None


async def test_keys_with_forbidden_characters(store: StateStore) -> None:
    job = "sweep/users\\#1?"
    tenant = "tenant~%'#"
    await store.put_checkpoint(Checkpoint(job=job, tenant=tenant, phase="p1"))
    await store.put_checkpoint(Checkpoint(job="sweep", tenant=tenant, phase="p2"))
    one = await store.get_checkpoint(job, tenant)
    two = await store.get_checkpoint("sweep", tenant)
    assert one is not None
    assert two is not None
    assert (one.job, one.tenant, one.phase) == (job, tenant, "p1")
    assert two.phase == "p2"


@pytest.mark.parametrize(
    "value",
    ["plain", "a/b", "a\\b", "a#b", "a?b", "tab\there", "\x7f\x85", "~41", "100%", "o'neil", "é😀"],
)
def test_sanitize_key_is_safe_and_reversible(value: str) -> None:
    key = sanitize_key(value)
    assert not any(c in key for c in "/\\#?")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key)
    assert desanitize_key(key) == value


def test_sanitize_key_keeps_values_apart_and_bounds_length() -> None:
    assert sanitize_key("a/b") != sanitize_key("a~2Fb")
    long_a, long_b = "x" * 1000 + "a", "x" * 1000 + "b"
    assert len(sanitize_key(long_a)) <= 400
    assert sanitize_key(long_a) != sanitize_key(long_b)


async def test_run_records(store: StateStore) -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    first = RunRecord(job="sweep", tenant=TENANT, correlation_id="c-1", started_at=start)
    await store.record_run(first)
    await store.record_run(
        dataclasses.replace(
            first,
            ended_at=start + timedelta(minutes=2),
            status="succeeded",
            planned=10,
            applied=9,
            failed=1,
            throttled=3,
            token_requests=1,
        )
    )
    await store.record_run(
        RunRecord(
            job="sweep",
            tenant="fabrikam.onmicrosoft.com",
            correlation_id="c-2",
            started_at=start + timedelta(hours=1),
            status="failed",
            error="boom " * 3000,
        )
    )
    await store.record_run(
        RunRecord(
            job="sweep", tenant=TENANT, correlation_id="c-3", started_at=start + timedelta(hours=2)
        )
    )
    await store.record_run(
        RunRecord(job="other", tenant=TENANT, correlation_id="c-4", started_at=start)
    )

    runs = await store.list_runs("sweep")
    assert [r.correlation_id for r in runs] == ["c-3", "c-2", "c-1"]  # newest first
    done = runs[2]
    assert (done.status, done.planned, done.applied, done.failed) == ("succeeded", 10, 9, 1)
    assert (done.throttled, done.token_requests) == (3, 1)
    assert done.started_at == start
    assert done.ended_at == start + timedelta(minutes=2)
    assert runs[1].error is not None
    assert runs[1].error.endswith("(truncated)")
    assert len(runs[1].error) < 8100

    mine = await store.list_runs("sweep", tenant=TENANT)
    assert [r.correlation_id for r in mine] == ["c-3", "c-1"]
    assert [r.correlation_id for r in await store.list_runs("sweep", limit=1)] == ["c-3"]
    assert await store.list_runs("nothing") == []


async def test_mark_done_is_idempotent(store: StateStore) -> None:
    key = "sweep/contoso/chunk#7?v=1"
    assert not await store.is_done(key)
    assert await store.mark_done(key) is True
    assert await store.mark_done(key) is False
    assert await store.is_done(key)
    assert not await store.is_done(key + "x")
    await store.clear_done(key)
    assert not await store.is_done(key)


async def test_mark_done_under_concurrent_redelivery(store: StateStore) -> None:
    results = await asyncio.gather(*(store.mark_done("message-42") for _ in range(10)))
    assert results.count(True) == 1


def test_table_prefix_is_validated(azurite: Azurite) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        StateStore.from_env({"AzureWebJobsStorage": azurite.connection_string}, table_prefix="a-b")


async def test_the_attempt_ledger_of_a_message(store: StateStore) -> None:
    empty = await store.get_deliveries("corr/1", "msg-1")
    assert (empty.attempts, empty.carried_failures, empty.carried_deliveries) == ({}, 0, 0)
    started = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    await store.record_delivery("corr/1", "msg-1", 1, started_at=started)
    await store.record_delivery("corr/1", "msg-1", 1, status="retrying", cause="HTTP 503")
    await asyncio.gather(  # concurrent writers of different deliveries never clobber each other
        store.record_delivery("corr/1", "msg-1", 2, started_at=started + timedelta(minutes=1)),
        store.carry_deliveries("corr/1", "msg-1", failures=2, deliveries=5, carried_from="msg-0"),
    )
    ledger = await store.get_deliveries("corr/1", "msg-1")
    assert ledger.attempts[1].started_at == started
    assert (ledger.attempts[1].status, ledger.attempts[1].cause) == ("retrying", "HTTP 503")
    assert ledger.attempts[2].status is None  # started, no outcome (yet, or never: a crash)
    assert (ledger.carried_failures, ledger.carried_deliveries) == (2, 5)
    assert ledger.carried_from == "msg-0"
    assert (await store.get_deliveries("corr/1", "msg-2")).attempts == {}  # per message id
    with pytest.raises(ValueError, match="start at 1"):
        await store.record_delivery("corr/1", "msg-1", 0, status="x")
    with pytest.raises(ValueError, match="correlation id and a message id"):
        await store.get_deliveries("corr/1", "")


async def test_storage_failures_are_state_store_errors_without_secrets() -> None:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.data.tables import TableServiceClient

    from sandbox.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME
    from shared.errors import StateStoreError

    service = TableServiceClient(  # nothing listens on port 9: refused at once, no retries
        endpoint=f"http://127.0.0.1:9/{DEV_ACCOUNT_NAME}",
        credential=AzureNamedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY),
        retry_total=0,
    )
    store = StateStore(service)
    with pytest.raises(StateStoreError, match="Table storage failed: ServiceRequestError") as info:
        await store.get_checkpoint("sweep", TENANT)
    assert DEV_ACCOUNT_KEY not in str(info.value)
    store.close()


async def test_job_queue_sends_base64_as_the_host_reads(azurite: Azurite) -> None:
    import base64

    from azure.storage.queue import QueueClient

    from shared.storage import JobQueue, storage_connection

    name = f"q-{uuid.uuid4().hex[:12]}"
    queue = JobQueue(storage_connection({"AzureWebJobsStorage": azurite.connection_string}), name)
    assert await queue.send_all(['{"n": 1}', '{"n": 2}']) == 2
    hidden = await queue.send('{"n": 3}', hidden_for=60)
    raw = QueueClient.from_connection_string(azurite.connection_string, name)
    visible = [m.content for m in raw.peek_messages(max_messages=10)]
    assert [base64.b64decode(v).decode() for v in visible] == ['{"n": 1}', '{"n": 2}']
    await queue.reveal(hidden)
    assert len(raw.peek_messages(max_messages=10)) == 3
    raw.close()
    queue.close()


# -- unit tests against a fake table service (no Azurite) -----------------------------------


class _FailingTable:
    """A table client whose writes and reads all raise ``error`` (as the SDK would)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed = False

    def _raise(self, *args: object, **kwargs: object) -> NoReturn:
        raise self.error

    create_entity = update_entity = upsert_entity = get_entity = _raise

    def close(self) -> None:
        self.closed = True


class _FakeService:
    def __init__(self, table: _FailingTable) -> None:
        self.table = table
        self.created: list[str] = []
        self.closed = False

    def create_table_if_not_exists(self, name: str) -> _FailingTable:
        self.created.append(name)
        return self.table

    def close(self) -> None:
        self.closed = True


def _fake_store(error: Exception) -> tuple[StateStore, _FakeService]:
    service = _FakeService(_FailingTable(error))
    return StateStore(cast("TableServiceClient", service), table_prefix="unit"), service


@pytest.mark.parametrize(
    ("error", "etag", "message"),
    [
        (ResourceExistsError("EntityAlreadyExists"), None, "already exists"),
        (ResourceModifiedError("UpdateConditionNotSatisfied"), 'W/"1"', "changed since it"),
        (ResourceNotFoundError("ResourceNotFound"), 'W/"1"', "was deleted since it"),
    ],
)
async def test_a_lost_checkpoint_race_keeps_the_sdk_error_as_its_cause(
    error: Exception, etag: str | None, message: str
) -> None:
    store, service = _fake_store(error)
    with pytest.raises(StateConflictError, match=message) as info:
        await store.put_checkpoint(Checkpoint(job="sweep", tenant=TENANT, etag=etag))
    assert info.value.__cause__ is error  # the SDK's status and request id stay reachable
    assert service.created == ["unitcheckpoints"]
    store.close()
    assert service.table.closed
    assert service.closed


async def test_sdk_failures_keep_the_sdk_error_as_their_cause_without_secrets() -> None:
    secret = "c2VjcmV0LXNpZ25hdHVyZQ"
    error = HttpResponseError(
        message=f"Server busy for https://acct.table.core.windows.net/t?sv=1&sig={secret}"
        f" (AccountKey={secret})"
    )
    store, _ = _fake_store(error)
    with pytest.raises(StateStoreError, match=r"Table storage failed: HttpResponseError") as info:
        await store.record_run(
            RunRecord(
                job="sweep",
                tenant=TENANT,
                correlation_id="c1",
                started_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
            )
        )
    assert secret not in str(info.value)
    assert "sig=***" in str(info.value)
    assert "AccountKey=***" in str(info.value)
    assert info.value.__cause__ is error


def test_long_text_is_split_within_the_property_limit_and_rejoined() -> None:
    entity: dict[str, object] = {}
    text = "a" + "😀" * 20_000  # 40,001 UTF-16 code units: more than one property holds
    put_text(entity, "Cursor", text)
    assert entity["CursorParts"] == 2
    for name in ("Cursor", "Cursor1"):
        assert len(str(entity[name]).encode("utf-16-le")) // 2 <= MAX_PROPERTY_UNITS
    assert get_text(entity, "Cursor") == text
    del entity["Cursor1"]
    with pytest.raises(StateStoreError, match="part 1 of 2 missing"):
        get_text(entity, "Cursor")
