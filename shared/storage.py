"""The daemon's durable state, in Azure Table storage on ``AzureWebJobsStorage``.

Three tables, created on first use (names start with ``table_prefix``, default ``daemon``):

- ``<prefix>checkpoints``: one entity per (job, tenant): delta link, phase, cursor, a small
  JSON ``data`` object and the time it was written. Writes are optimistic: the entity's
  ETag read with the checkpoint must still match, otherwise :class:`StateConflictError`.
- ``<prefix>runs``: one entity per run (job, tenant, correlation id), newest first.
- ``<prefix>ledger``: the idempotency ledger. ``mark_done(key)`` inserts and returns False
  when the key was already there, so a message delivered twice changes nothing the second
  time.
- ``<prefix>deliveries``: the attempt ledger of queue messages, one entity per (correlation
  id, message id): when each delivery started and how it ended, plus the failures and
  deliveries carried over from an earlier copy of the same message. It tells "the host
  redelivered after a crash" from "the job failed" (see ``shared/jobs/dispatch.py``).

Every storage failure the SDK reports (unreachable, refused, 5xx after its retries) is raised
as :class:`StateStoreError`, which the jobs treat as retryable.

:class:`JobQueue` sends job messages to a storage queue the way the Functions host reads
them (base64 text, ``extensions.queues.messageEncoding``).

The SDK (azure-data-tables) is synchronous; every call runs in a worker thread
(``asyncio.to_thread``) so the event loop is never blocked. Keys are sanitized (Table keys
cannot contain ``/ \\ # ?`` or control characters) reversibly; long strings (delta links) are
split over several properties of at most 32,000 UTF-16 code units each, and a value too big
for one entity is refused with :class:`StateValueTooLargeError`.

:func:`storage_connection` parses the Functions conventions for a storage connection: a
connection string in ``AzureWebJobsStorage`` (``UseDevelopmentStorage=true`` for Azurite) or
an identity-based connection (``AzureWebJobsStorage__accountName`` or
``__tableServiceUri`` / ``__queueServiceUri`` / ``__blobServiceUri``, ``__credential``,
``__clientId``). Errors name the setting and never echo a connection string or key.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential, TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, TableClient, TableServiceClient, UpdateMode

from shared.errors import (
    SettingError,
    StateConflictError,
    StateStoreError,
    StateValueTooLargeError,
)

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueServiceClient

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CONNECTION",
    "Checkpoint",
    "DeliveryAttempt",
    "DeliveryLedger",
    "JobQueue",
    "RunRecord",
    "SentMessage",
    "StateConflictError",
    "StateStore",
    "StateStoreError",
    "StateValueTooLargeError",
    "StorageConnection",
    "desanitize_key",
    "sanitize_key",
    "storage_connection",
]

DEFAULT_CONNECTION = "AzureWebJobsStorage"

# Azurite's well-known development account (public: in Microsoft's docs and every Azurite).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_DEV_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}

_SERVICES = ("blob", "queue", "table")
_CONNECTION_STRING_KEYS = frozenset(
    {
        "defaultendpointsprotocol",
        "accountname",
        "accountkey",
        "sharedaccesssignature",
        "endpointsuffix",
        "usedevelopmentstorage",
        "developmentstorageproxyuri",
    }
    | {
        f"{service}{kind}endpoint"
        for service in ("blob", "queue", "table", "file", "dfs")
        for kind in ("", "secondary")
    }
)

T = TypeVar("T")


# -- errors --------------------------------------------------------------------------------


# -- connection settings -------------------------------------------------------------------


@dataclass(frozen=True)
class StorageConnection:
    """Where a storage account's services are and how to authenticate to them.

    ``credential`` is an account key, a SAS, or a token credential (identity-based). It is
    kept out of ``repr`` so a traceback or log line never shows it.
    """

    setting: str
    account_name: str | None
    blob_endpoint: str | None
    queue_endpoint: str | None
    table_endpoint: str | None
    credential: AzureNamedKeyCredential | AzureSasCredential | TokenCredential | None = field(
        repr=False, compare=False
    )
    identity_based: bool = False

    def _require(self, service: str) -> str:
        endpoint: str | None = getattr(self, f"{service}_endpoint")
        if endpoint is None:
            raise SettingError(
                self.setting,
                f"gives no {service} endpoint: set {self.setting}__{service}ServiceUri (or "
                f"{self.setting}__accountName), or a connection string with "
                f"{service.capitalize()}Endpoint or AccountName",
            )
        return endpoint

    def table_service(self) -> TableServiceClient:
        return TableServiceClient(endpoint=self._require("table"), credential=self.credential)

    def queue_service(self) -> QueueServiceClient:
        from azure.storage.queue import QueueServiceClient

        return QueueServiceClient(account_url=self._require("queue"), credential=self.credential)

    def queue_client(self, queue: str, *, base64: bool = False) -> QueueClient:
        """A client for one queue; ``base64`` encodes sent text (TextBase64EncodePolicy)."""
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        return QueueClient(
            account_url=self._require("queue"),
            queue_name=queue,
            credential=self.credential,
            message_encode_policy=TextBase64EncodePolicy() if base64 else None,
        )


def _parse_connection_string(setting: str, value: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise SettingError(
                setting,
                "is not a storage connection string: expected 'Name=value' pairs separated "
                "by ';' (such as DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...)"
                " or UseDevelopmentStorage=true",
            )
        name = key.strip().lower()
        if name not in _CONNECTION_STRING_KEYS:
            raise SettingError(  # the part itself is not shown: it may be a key
                setting,
                "is not a storage connection string: it has a part that is not one of "
                "AccountName, AccountKey, SharedAccessSignature, DefaultEndpointsProtocol, "
                "EndpointSuffix, <Service>Endpoint or UseDevelopmentStorage",
            )
        parts[name] = val.strip()
    if not parts:
        raise SettingError(setting, "is empty: expected a storage connection string")
    return parts


def _endpoint(setting: str, name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(setting, f"{name} is not an http(s) URL")
    if parts.query or parts.username or parts.password:
        raise SettingError(
            setting,
            f"{name} must not carry a query or credentials (put a SAS in SharedAccessSignature)",
        )
    return value.rstrip("/")


def _from_connection_string(setting: str, value: str) -> StorageConnection:
    parts = _parse_connection_string(setting, value)
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        proxy = parts.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
        host = urlsplit(proxy).hostname if "://" in proxy else None
        if not host:
            raise SettingError(setting, "DevelopmentStorageProxyUri is not an http(s) URL")
        scheme = urlsplit(proxy).scheme
        dev = {s: f"{scheme}://{host}:{p}/{_DEV_ACCOUNT}" for s, p in _DEV_PORTS.items()}
        return StorageConnection(
            setting=setting,
            account_name=_DEV_ACCOUNT,
            blob_endpoint=dev["blob"],
            queue_endpoint=dev["queue"],
            table_endpoint=dev["table"],
            credential=AzureNamedKeyCredential(_DEV_ACCOUNT, _DEV_KEY),
        )

    account = parts.get("accountname") or None
    key = parts.get("accountkey") or None
    sas = (parts.get("sharedaccesssignature") or "").lstrip("?") or None
    if key and not account:
        raise SettingError(setting, "has an AccountKey but no AccountName")
    if key and sas:
        raise SettingError(setting, "has both AccountKey and SharedAccessSignature: keep one")
    credential: AzureNamedKeyCredential | AzureSasCredential | None = None
    if key and account:
        credential = AzureNamedKeyCredential(account, key)
    elif sas:
        credential = AzureSasCredential(sas)
    else:
        raise SettingError(
            setting,
            "has no AccountKey or SharedAccessSignature; for a managed identity use "
            f"{setting}__accountName (identity-based connection) instead",
        )

    protocol = parts.get("defaultendpointsprotocol", "https").lower()
    if protocol not in ("http", "https"):
        raise SettingError(setting, "DefaultEndpointsProtocol must be http or https")
    suffix = parts.get("endpointsuffix", "core.windows.net")
    endpoints: dict[str, str | None] = {}
    for service in _SERVICES:
        explicit = parts.get(f"{service}endpoint")
        if explicit:
            endpoints[service] = _endpoint(setting, f"{service.capitalize()}Endpoint", explicit)
        elif account:
            endpoints[service] = f"{protocol}://{account}.{service}.{suffix}"
        else:
            endpoints[service] = None
    if not any(endpoints.values()):
        raise SettingError(setting, "names no AccountName and no service endpoint")
    return StorageConnection(
        setting=setting,
        account_name=account,
        blob_endpoint=endpoints["blob"],
        queue_endpoint=endpoints["queue"],
        table_endpoint=endpoints["table"],
        credential=credential,
    )


def _identity_credential(env: Mapping[str, str], prefix: str) -> TokenCredential:
    kind = (env.get(f"{prefix}__credential") or "").strip().lower()
    client_id = (env.get(f"{prefix}__clientId") or "").strip() or None
    if kind == "managedidentity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    if kind:
        raise SettingError(
            f"{prefix}__credential",
            f"{kind!r} is not supported: expected managedidentity (or leave it unset to use "
            "the developer's own sign-in through DefaultAzureCredential)",
        )
    if client_id:
        raise SettingError(
            f"{prefix}__clientId",
            f"is only used with {prefix}__credential=managedidentity; set that too",
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def storage_connection(env: Mapping[str, str], name: str = DEFAULT_CONNECTION) -> StorageConnection:
    """Parse the storage connection called ``name`` (a connection setting) from ``env``."""
    raw = (env.get(name) or "").strip()
    prefix = f"{name}__"
    identity_keys = {k for k in env if k.startswith(prefix) and (env.get(k) or "").strip()}
    if raw:
        if identity_keys:
            logger.warning(
                "%s is set, so the identity-based settings %s are ignored",
                name,
                ", ".join(sorted(identity_keys)),
            )
        return _from_connection_string(name, raw)
    if not identity_keys:
        raise SettingError(
            name,
            "is required: a storage connection string (UseDevelopmentStorage=true for "
            f"Azurite) or an identity-based connection ({name}__accountName with "
            f"{name}__credential=managedidentity)",
        )

    account = (env.get(f"{name}__accountName") or "").strip() or None
    if account is not None and not re.fullmatch(r"[a-z0-9]{3,24}", account):
        raise SettingError(
            f"{name}__accountName",
            f"{account!r} is not a storage account name (3-24 lowercase letters and digits)",
        )
    endpoints: dict[str, str | None] = {}
    for service in _SERVICES:
        uri_setting = f"{name}__{service}ServiceUri"
        uri = (env.get(uri_setting) or "").strip()
        if uri:
            parts = urlsplit(uri)
            if parts.scheme != "https" or not parts.hostname:
                raise SettingError(uri_setting, f"{uri!r} must be an https:// URL")
            if parts.query or parts.username or parts.password:
                raise SettingError(uri_setting, "must not carry a query or credentials")
            endpoints[service] = uri.rstrip("/")
        elif account:
            endpoints[service] = f"https://{account}.{service}.core.windows.net"
        else:
            endpoints[service] = None
    if not any(endpoints.values()):
        raise SettingError(
            f"{name}__accountName",
            f"is required for an identity-based connection (or set {name}__queueServiceUri "
            f"and {name}__tableServiceUri)",
        )
    return StorageConnection(
        setting=name,
        account_name=account,
        blob_endpoint=endpoints["blob"],
        queue_endpoint=endpoints["queue"],
        table_endpoint=endpoints["table"],
        credential=_identity_credential(env, name),
        identity_based=True,
    )


# -- keys and values -----------------------------------------------------------------------

_MAX_KEY_CHARS = 400  # Table keys are at most 1 KiB (512 UTF-16 units); keep a margin
_KEY_ESCAPE = "~"
_UNSAFE_KEY = re.compile(r"[/\\#?~%'\x00-\x1f\x7f-\x9f]")


def sanitize_key(value: str) -> str:
    """A PartitionKey/RowKey for ``value``: ``/ \\ # ?``, ``~ % '`` and control characters
    become ``~XX`` (UTF-8 bytes in hex), so distinct values stay distinct. A result longer
    than 400 characters is shortened to a prefix plus a SHA-256 of the whole value."""
    safe = _UNSAFE_KEY.sub(
        lambda m: "".join(f"{_KEY_ESCAPE}{b:02X}" for b in m.group().encode("utf-8")), value
    )
    if len(safe) > _MAX_KEY_CHARS:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        safe = f"{safe[:300]}{_KEY_ESCAPE}h{digest}"
    return safe


def desanitize_key(key: str) -> str:
    """The value :func:`sanitize_key` was given (not for hashed, shortened keys)."""
    return re.sub(
        r"(?:~[0-9A-F]{2})+",
        lambda m: bytes.fromhex(m.group().replace(_KEY_ESCAPE, "")).decode("utf-8"),
        key,
    )


_MAX_PROPERTY_UNITS = 32_000  # a string property holds at most 64 KiB = 32,768 UTF-16 units
_MAX_CHUNKS = 12  # 12 x 64 KiB stays under the 1 MiB entity limit with room for the rest


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _split(name: str, value: str, limit: int = _MAX_PROPERTY_UNITS) -> list[str]:
    chunks: list[str] = []
    start = 0
    while start < len(value):
        end = min(len(value), start + limit)
        while _utf16_units(value[start:end]) > limit:  # astral characters count twice
            end -= max(1, (end - start) // 16)
        chunks.append(value[start:end])
        start = end
    if len(chunks) > _MAX_CHUNKS:
        raise StateValueTooLargeError(
            f"{name} is {len(value)} characters: more than one table entity holds "
            f"({_MAX_CHUNKS} x {limit} characters); store it elsewhere (a blob) and keep "
            "a reference"
        )
    return chunks


def _put_text(entity: dict[str, Any], name: str, value: str | None) -> None:
    if value is None:
        return
    chunks = _split(name, value)
    entity[name] = chunks[0] if chunks else ""
    if len(chunks) > 1:
        entity[f"{name}Parts"] = len(chunks)
        for index, chunk in enumerate(chunks[1:], start=1):
            entity[f"{name}{index}"] = chunk


def _get_text(entity: Mapping[str, Any], name: str) -> str | None:
    first = entity.get(name)
    if first is None:
        return None
    parts = _int(entity.get(f"{name}Parts")) or 1
    pieces = [str(first)]
    for index in range(1, parts):
        piece = entity.get(f"{name}{index}")
        if piece is None:
            raise StateStoreError(f"stored {name} is incomplete: part {index} of {parts} missing")
        pieces.append(str(piece))
    return "".join(pieces)


def _int(value: Any) -> int:
    if value is None:
        return 0
    raw = getattr(value, "value", value)  # Int64 comes back as an EntityProperty
    return int(raw)


def _int64(value: int) -> tuple[int, EdmType]:
    return (int(value), EdmType.INT64)


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise StateStoreError(f"stored time {value!r} is not a datetime")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


_SECRET_PARAMETER = re.compile(r"(?i)\b(sig|se|sp|sv|skoid|sktid|skt|ske|sks|skv)=[^&\s'\"]+")
_ACCOUNT_KEY = re.compile(r"(?i)(AccountKey|SharedAccessSignature)=[^;\s'\"]+")


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an SDK error, one line, with any SAS or key value blanked out
    (a URL in the message may carry a SAS)."""
    text = " ".join(str(exc).split())
    text = _ACCOUNT_KEY.sub(lambda m: f"{m.group(1)}=***", text)
    text = _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}=***", text)
    if len(text) > 500:
        text = text[:500] + "…"
    return f"{type(exc).__name__}: {text}"


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """Where a job stands for one tenant. ``etag`` is set on a checkpoint read from the store
    and must be kept when writing it back (use :func:`dataclasses.replace`)."""

    job: str
    tenant: str
    delta_link: str | None = None
    phase: str | None = None
    cursor: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # delta links carry opaque tokens: show only their length
        link = f"<{len(self.delta_link)} chars>" if self.delta_link else None
        return (
            f"Checkpoint(job={self.job!r}, tenant={self.tenant!r}, delta_link={link}, "
            f"phase={self.phase!r}, cursor={self.cursor!r}, updated_at={self.updated_at!r})"
        )


@dataclass(frozen=True)
class RunRecord:
    """One run of a job for one tenant (recorded when it starts, again when it ends)."""

    job: str
    tenant: str
    correlation_id: str
    started_at: datetime
    ended_at: datetime | None = None
    status: str = "running"
    planned: int = 0
    applied: int = 0
    failed: int = 0
    throttled: int = 0
    token_requests: int = 0
    error: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class DeliveryAttempt:
    """One delivery of a queue message: when it started and how it ended (``status`` None:
    it never recorded an end — the worker died or is still running)."""

    started_at: datetime | None = None
    status: str | None = None
    cause: str | None = None


@dataclass(frozen=True)
class DeliveryLedger:
    """The attempt ledger of one queue message (one copy: one message id).

    ``attempts`` maps the host's dequeue count to that delivery. ``carried_*`` come from an
    earlier copy of the same message that was handed over to this one.
    """

    correlation_id: str
    message_id: str
    attempts: Mapping[int, DeliveryAttempt] = field(default_factory=dict)
    carried_failures: int = 0
    carried_deliveries: int = 0
    carried_from: str | None = None
    carried_cause: str | None = None


MAX_LEDGER_DELIVERIES = 60  # per copy: 3 properties each stays under 252 per entity
_MAX_ERROR_CHARS = 8_000
_EPOCH_MAX_US = 10**19 - 1  # row keys sort ascending: an inverted time puts newest first


def _run_row_key(record: RunRecord) -> str:
    started = record.started_at
    if started.tzinfo is None:
        raise ValueError("RunRecord.started_at must be timezone-aware")
    micros = int(started.timestamp() * 1_000_000)
    return f"{_EPOCH_MAX_US - micros:019d}_{sanitize_key(record.tenant)}_" + sanitize_key(
        record.correlation_id
    )


# -- the store -----------------------------------------------------------------------------


class StateStore:
    """Checkpoints, run records and the idempotency ledger (async API over azure-data-tables).

    One instance may be used from any event loop: the SDK client is synchronous and every call
    runs in a worker thread.
    """

    def __init__(self, service: TableServiceClient, *, table_prefix: str = "daemon") -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,40}", table_prefix):
            raise ValueError(
                f"table_prefix {table_prefix!r}: expected a letter then letters or digits"
            )
        self._service = service
        self.checkpoints_table = f"{table_prefix}checkpoints"
        self.runs_table = f"{table_prefix}runs"
        self.ledger_table = f"{table_prefix}ledger"
        self.deliveries_table = f"{table_prefix}deliveries"
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        connection: str = DEFAULT_CONNECTION,
        table_prefix: str = "daemon",
    ) -> StateStore:
        return cls(storage_connection(env, connection).table_service(), table_prefix=table_prefix)

    def close(self) -> None:
        with self._lock:
            for client in self._tables.values():
                client.close()
            self._tables.clear()
        self._service.close()

    def _table(self, name: str) -> TableClient:
        with self._lock:
            client = self._tables.get(name)
            if client is None:
                client = self._service.create_table_if_not_exists(name)
                self._tables[name] = client
            return client

    async def _run(self, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except StateStoreError:
            raise
        except AzureError as exc:
            raise StateStoreError(f"Table storage failed: {_describe(exc)}") from exc

    # -- checkpoints -------------------------------------------------------------------------

    async def get_checkpoint(self, job: str, tenant: str) -> Checkpoint | None:
        def call() -> Checkpoint | None:
            try:
                entity = self._table(self.checkpoints_table).get_entity(
                    sanitize_key(job), sanitize_key(tenant)
                )
            except ResourceNotFoundError:
                return None
            raw_data = _get_text(entity, "Data")
            return Checkpoint(
                job=job,
                tenant=tenant,
                delta_link=_get_text(entity, "DeltaLink"),
                phase=entity.get("Phase"),
                cursor=_get_text(entity, "Cursor"),
                data=json.loads(raw_data) if raw_data else {},
                updated_at=_utc(entity.get("UpdatedAt")),
                etag=entity.metadata.get("etag"),
            )

        return await self._run(call)

    async def put_checkpoint(self, checkpoint: Checkpoint, *, force: bool = False) -> Checkpoint:
        """Write ``checkpoint`` and return it with its new ETag and time.

        Without an ETag the checkpoint must not exist yet; with one, the stored checkpoint
        must still carry it. Otherwise :class:`StateConflictError` (someone else wrote it:
        read again and redo the work). ``force`` writes unconditionally.
        """
        updated_at = _now()
        entity: dict[str, Any] = {
            "PartitionKey": sanitize_key(checkpoint.job),
            "RowKey": sanitize_key(checkpoint.tenant),
            "Job": checkpoint.job,
            "Tenant": checkpoint.tenant,
            "UpdatedAt": updated_at,
        }
        if checkpoint.phase is not None:
            entity["Phase"] = checkpoint.phase
        _put_text(entity, "DeltaLink", checkpoint.delta_link)
        _put_text(entity, "Cursor", checkpoint.cursor)
        if checkpoint.data:
            _put_text(entity, "Data", json.dumps(checkpoint.data, separators=(",", ":")))
        what = f"checkpoint of job {checkpoint.job!r} for tenant {checkpoint.tenant!r}"

        def call() -> str | None:
            table = self._table(self.checkpoints_table)
            try:
                if force:
                    result = table.upsert_entity(entity, mode=UpdateMode.REPLACE)
                elif checkpoint.etag is None:
                    result = table.create_entity(entity)
                else:
                    result = table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=checkpoint.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except ResourceExistsError:
                raise StateConflictError(
                    f"{what} already exists: another run wrote it first; read it and retry"
                ) from None
            except ResourceModifiedError:
                raise StateConflictError(
                    f"{what} changed since it was read (ETag mismatch): another run wrote it; "
                    "read it again and retry"
                ) from None
            except ResourceNotFoundError:
                raise StateConflictError(
                    f"{what} was deleted since it was read; read it again and retry"
                ) from None
            etag = result.get("etag")
            return str(etag) if etag is not None else None

        etag = await self._run(call)
        return dataclasses.replace(checkpoint, updated_at=updated_at, etag=etag)

    async def delete_checkpoint(self, job: str, tenant: str) -> None:
        def call() -> None:
            self._table(self.checkpoints_table).delete_entity(
                sanitize_key(job), sanitize_key(tenant)
            )

        await self._run(call)

    # -- run records -------------------------------------------------------------------------

    async def record_run(self, record: RunRecord) -> None:
        """Insert or replace the record of one run (same job, tenant, start, correlation id)."""
        error = record.error
        if error is not None and len(error) > _MAX_ERROR_CHARS:
            error = error[:_MAX_ERROR_CHARS] + "… (truncated)"
        entity: dict[str, Any] = {
            "PartitionKey": sanitize_key(record.job),
            "RowKey": _run_row_key(record),
            "Job": record.job,
            "Tenant": record.tenant,
            "CorrelationId": record.correlation_id,
            "StartedAt": record.started_at,
            "Status": record.status,
            "Planned": _int64(record.planned),
            "Applied": _int64(record.applied),
            "Failed": _int64(record.failed),
            "Throttled": _int64(record.throttled),
            "TokenRequests": _int64(record.token_requests),
            "DryRun": record.dry_run,
        }
        if record.ended_at is not None:
            entity["EndedAt"] = record.ended_at
        if error is not None:
            entity["Error"] = error

        def call() -> None:
            self._table(self.runs_table).upsert_entity(entity, mode=UpdateMode.REPLACE)

        await self._run(call)

    async def list_runs(
        self, job: str, *, tenant: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """The job's runs, newest first (optionally for one tenant), at most ``limit``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")

        def call() -> list[RunRecord]:
            table = self._table(self.runs_table)
            parameters: dict[str, Any] = {"pk": sanitize_key(job)}
            query = "PartitionKey eq @pk"
            if tenant is not None:
                query += " and Tenant eq @tenant"
                parameters["tenant"] = tenant
            records: list[RunRecord] = []
            entities: Iterator[Any] = iter(
                table.query_entities(
                    query, parameters=parameters, results_per_page=min(limit, 1000)
                )
            )
            for entity in entities:
                records.append(_run_from_entity(entity))
                if len(records) >= limit:
                    break
            return records

        return await self._run(call)

    # -- idempotency ledger --------------------------------------------------------------------

    @staticmethod
    def _ledger_keys(key: str) -> tuple[str, str]:
        if not key:
            raise ValueError("an idempotency key must not be empty")
        # Spread keys over 256 partitions: one partition serves ~2,000 operations a second.
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:2], sanitize_key(key)

    async def mark_done(self, key: str, *, note: str | None = None) -> bool:
        """Record ``key`` as done: True the first time, False if it was already done."""
        partition, row = self._ledger_keys(key)
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": row,
            "Key": key[:_MAX_PROPERTY_UNITS],
            "DoneAt": _now(),
        }
        if note is not None:
            entity["Note"] = note[:_MAX_ERROR_CHARS]

        def call() -> bool:
            try:
                self._table(self.ledger_table).create_entity(entity)
            except ResourceExistsError:
                return False
            return True

        return await self._run(call)

    async def is_done(self, key: str) -> bool:
        partition, row = self._ledger_keys(key)

        def call() -> bool:
            try:
                self._table(self.ledger_table).get_entity(partition, row, select=["RowKey"])
            except ResourceNotFoundError:
                return False
            return True

        return await self._run(call)

    async def clear_done(self, key: str) -> None:
        """Forget ``key`` (for work that was marked done but then failed to complete)."""
        partition, row = self._ledger_keys(key)

        def call() -> None:
            self._table(self.ledger_table).delete_entity(partition, row)

        await self._run(call)

    # -- the attempt ledger of queue messages --------------------------------------------------

    @staticmethod
    def _delivery_keys(correlation_id: str, message_id: str) -> tuple[str, str]:
        if not correlation_id or not message_id:
            raise ValueError("a delivery needs a correlation id and a message id")
        return sanitize_key(correlation_id), sanitize_key(message_id)

    async def get_deliveries(self, correlation_id: str, message_id: str) -> DeliveryLedger:
        """The attempt ledger of one message (empty when it has none yet)."""
        partition, row = self._delivery_keys(correlation_id, message_id)

        def call() -> DeliveryLedger:
            try:
                entity = self._table(self.deliveries_table).get_entity(partition, row)
            except ResourceNotFoundError:
                return DeliveryLedger(correlation_id, message_id)
            attempts: dict[int, DeliveryAttempt] = {}
            for name in entity:
                match = re.fullmatch(r"D(\d{3})Start", name)
                if match is None:
                    continue
                number = int(match.group(1))
                attempts[number] = DeliveryAttempt(
                    started_at=_utc(entity.get(name)),
                    status=entity.get(f"D{number:03d}Status"),
                    cause=entity.get(f"D{number:03d}Cause"),
                )
            return DeliveryLedger(
                correlation_id,
                message_id,
                attempts=attempts,
                carried_failures=_int(entity.get("CarriedFailures")),
                carried_deliveries=_int(entity.get("CarriedDeliveries")),
                carried_from=entity.get("CarriedFrom"),
                carried_cause=entity.get("CarriedCause"),
            )

        return await self._run(call)

    async def record_delivery(
        self,
        correlation_id: str,
        message_id: str,
        delivery: int,
        *,
        started_at: datetime | None = None,
        status: str | None = None,
        cause: str | None = None,
    ) -> None:
        """Record the start (``started_at``) and/or the end (``status``, ``cause``) of
        delivery number ``delivery`` (the host's dequeue count). Merged into the entity, so
        concurrent writers of other deliveries never overwrite each other. Deliveries after
        the 60th of one copy are not recorded (an entity holds at most 252 properties)."""
        if delivery < 1:
            raise ValueError("delivery numbers start at 1 (the host's dequeue count)")
        if delivery > MAX_LEDGER_DELIVERIES:
            return
        partition, row = self._delivery_keys(correlation_id, message_id)
        entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row}
        prefix = f"D{delivery:03d}"
        if started_at is not None:
            entity[f"{prefix}Start"] = started_at
        if status is not None:
            entity[f"{prefix}Status"] = status
        if cause is not None:
            entity[f"{prefix}Cause"] = cause[:_MAX_ERROR_CHARS]

        def call() -> None:
            self._table(self.deliveries_table).upsert_entity(entity, mode=UpdateMode.MERGE)

        await self._run(call)

    async def carry_deliveries(
        self,
        correlation_id: str,
        message_id: str,
        *,
        failures: int,
        deliveries: int,
        carried_from: str,
        cause: str | None = None,
    ) -> None:
        """Start the ledger of a fresh copy ``message_id`` with an earlier copy's counts."""
        partition, row = self._delivery_keys(correlation_id, message_id)
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": row,
            "CarriedFailures": _int64(failures),
            "CarriedDeliveries": _int64(deliveries),
            "CarriedFrom": carried_from,
        }
        if cause is not None:
            entity["CarriedCause"] = cause[:_MAX_ERROR_CHARS]

        def call() -> None:
            self._table(self.deliveries_table).upsert_entity(entity, mode=UpdateMode.MERGE)

        await self._run(call)


# -- the jobs queue ------------------------------------------------------------------------


@dataclass(frozen=True)
class SentMessage:
    """A message :class:`JobQueue` sent: its id, and the pop receipt to change it."""

    id: str
    pop_receipt: str = field(repr=False)


class JobQueue:
    """Sends job messages to ``queue`` as the Functions host reads them.

    ``base64`` follows host.json ``extensions.queues.messageEncoding`` (base64 by default: a
    plain-text message would go to poison unread). The queue is created on first use.
    Every SDK failure is raised as :class:`StateStoreError`.
    """

    def __init__(self, connection: StorageConnection, queue: str, *, base64: bool = True) -> None:
        self.queue = queue
        self._connection = connection
        self._base64 = base64
        self._clients: dict[str, QueueClient] = {}
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def _client(self, name: str) -> QueueClient:
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._connection.queue_client(name, base64=self._base64)
                self._clients[name] = client
        if name not in self._created:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            self._created.add(name)
        return client

    async def _run(self, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except AzureError as exc:
            raise StateStoreError(f"Queue storage failed: {_describe(exc)}") from exc

    async def send(self, text: str, *, hidden_for: int = 0) -> SentMessage:
        """Send one message; ``hidden_for`` seconds before anyone can receive it."""

        def call() -> SentMessage:
            sent = self._client(self.queue).send_message(
                text, visibility_timeout=hidden_for or None
            )
            return SentMessage(str(sent.id), str(sent.pop_receipt))

        return await self._run(call)

    async def send_all(self, texts: list[str]) -> int:
        """Send each of ``texts`` (in order); returns how many were sent."""

        def call() -> int:
            client = self._client(self.queue)
            for text in texts:
                client.send_message(text)
            return len(texts)

        return await self._run(call)

    async def reveal(self, message: SentMessage) -> None:
        """Make a message sent with ``hidden_for`` visible now."""

        def call() -> None:
            self._client(self.queue).update_message(
                message.id, message.pop_receipt, visibility_timeout=0
            )

        await self._run(call)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _run_from_entity(entity: Mapping[str, Any]) -> RunRecord:
    started = _utc(entity.get("StartedAt"))
    if started is None:
        raise StateStoreError(f"run record {entity.get('RowKey')!r} has no StartedAt")
    return RunRecord(
        job=str(entity.get("Job", "")),
        tenant=str(entity.get("Tenant", "")),
        correlation_id=str(entity.get("CorrelationId", "")),
        started_at=started,
        ended_at=_utc(entity.get("EndedAt")),
        status=str(entity.get("Status", "")),
        planned=_int(entity.get("Planned")),
        applied=_int(entity.get("Applied")),
        failed=_int(entity.get("Failed")),
        throttled=_int(entity.get("Throttled")),
        token_requests=_int(entity.get("TokenRequests")),
        error=entity.get("Error"),
        dry_run=bool(entity.get("DryRun", False)),
    )
