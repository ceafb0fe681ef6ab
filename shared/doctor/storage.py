"""``doctor``'s storage check: ``AzureWebJobsStorage`` answers, quickly and without retries.

The connection may be a connection string or the identity-based ``__accountName`` /
``__queueServiceUri`` + ``__tableServiceUri`` form; the queue and table services must answer
within a few seconds. Also used by the CLI and the local runner (:func:`probe_storage`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from shared.doctor.report import Check
from shared.errors import SettingError, StorageUnreachableError
from shared.settings import Settings
from shared.storage import DEFAULT_CONNECTION, StorageConnection, storage_connection

__all__ = ["STORAGE_TIMEOUT", "probe_storage", "storage_check"]

STORAGE_TIMEOUT = 5.0  # seconds per storage call in a probe; the probe never retries


def _probe_sync(
    connection: StorageConnection, queues: tuple[str, ...], tables: bool, timeout: float
) -> list[str]:
    from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
    from azure.core.exceptions import ResourceNotFoundError as NotFound
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueClient

    options: dict[str, Any] = {
        "retry_total": 0,
        "connection_timeout": timeout,
        "read_timeout": timeout,
    }
    notes: list[str] = []

    def failed(service: str, endpoint: str | None, exc: Exception) -> StorageUnreachableError:
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
        ):
            why = "refused the credential (check the account key, SAS or the identity's role)"
        elif isinstance(exc, HttpResponseError):
            why = f"answered HTTP {exc.status_code}"
        else:
            why = f"did not answer within {timeout:g} s ({type(exc).__name__})"
        return StorageUnreachableError(
            f"{connection.setting}: the {service} service at {endpoint} {why}"
        )

    for queue in queues:
        endpoint = connection.queue_endpoint
        if endpoint is None:
            raise StorageUnreachableError(f"{connection.setting} gives no queue endpoint")
        client = QueueClient(
            account_url=endpoint, queue_name=queue, credential=connection.credential, **options
        )
        try:
            client.get_queue_properties()
        except NotFound:
            notes.append(f"queue {queue} does not exist yet (the first message creates it)")
        except AzureError as exc:  # not chained: its message may quote a SAS URL
            raise failed("queue", endpoint, exc) from None
        finally:
            client.close()
    if tables:
        endpoint = connection.table_endpoint
        if endpoint is None:
            raise StorageUnreachableError(f"{connection.setting} gives no table endpoint")
        service = TableServiceClient(endpoint=endpoint, credential=connection.credential, **options)
        try:
            next(iter(service.list_tables(results_per_page=1).by_page()), None)
        except AzureError as exc:  # not chained: its message may quote a SAS URL
            raise failed("table", endpoint, exc) from None
        finally:
            service.close()
    return notes


async def probe_storage(
    env: Mapping[str, str],
    *,
    connection: str = DEFAULT_CONNECTION,
    queues: tuple[str, ...] = (),
    tables: bool = True,
    timeout: float = STORAGE_TIMEOUT,
) -> list[str]:
    """Check that a storage connection's queue and table services answer, quickly.

    Each call has ``timeout`` seconds and no retry. Returns notes (a queue that does not
    exist yet); raises :class:`SettingError` for a missing or malformed connection and
    :class:`StorageUnreachableError` when a service does not answer or refuses. Messages
    name the setting and the endpoint, never a key or connection string.
    """
    parsed = storage_connection(env, connection)
    return await asyncio.to_thread(_probe_sync, parsed, queues, tables, timeout)


async def storage_check(env: Mapping[str, str], settings: Settings, timeout: float) -> Check:
    """``AzureWebJobsStorage``'s queue (the jobs queue) and table services answer."""
    name = "storage"
    try:
        parsed = storage_connection(env, DEFAULT_CONNECTION)
        notes = await asyncio.to_thread(_probe_sync, parsed, (settings.jobs_queue,), True, timeout)
    except SettingError as exc:
        return Check(
            name,
            False,
            str(exc),
            f"set {DEFAULT_CONNECTION} to the function app's storage account connection "
            f"string, or {DEFAULT_CONNECTION}__accountName with "
            f"{DEFAULT_CONNECTION}__credential=managedidentity (UseDevelopmentStorage=true "
            "for a local Azurite)",
        )
    except StorageUnreachableError as exc:
        return Check(
            name,
            False,
            str(exc),
            "check that the account (or Azurite) is running and reachable from here, and "
            "that the identity has Storage Queue Data Contributor and Storage Table Data "
            "Contributor on it (identity-based connections)",
        )
    kind = "identity-based" if parsed.identity_based else "connection string"
    return Check(
        name,
        True,
        f"{DEFAULT_CONNECTION} ({kind}): queue {settings.jobs_queue} and the tables answer",
        warnings=notes,
        data={"queue_endpoint": parsed.queue_endpoint, "table_endpoint": parsed.table_endpoint},
    )
