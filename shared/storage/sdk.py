"""Calling the synchronous Azure storage SDK from async code, and its errors as ours.

azure-data-tables and azure-storage-queue are synchronous: :func:`in_thread` runs one call in
a worker thread (``asyncio.to_thread``) so the event loop is never blocked, and raises every
SDK failure (unreachable, refused, 5xx after the SDK's own retries) as
:class:`~shared.errors.StateStoreError`, which the jobs treat as retryable. The SDK error
stays chained (``from exc``): its status and request id are what an operator needs. Our
message describes it with any SAS or account key blanked out (:func:`describe`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TypeVar

from azure.core.exceptions import AzureError

from shared.errors import StateStoreError

__all__ = ["describe", "in_thread"]

T = TypeVar("T")

_SECRET_PARAMETER = re.compile(r"(?i)\b(sig|se|sp|sv|skoid|sktid|skt|ske|sks|skv)=[^&\s'\"]+")
_ACCOUNT_KEY = re.compile(r"(?i)(AccountKey|SharedAccessSignature)=[^;\s'\"]+")


async def in_thread(call: Callable[[], T], *, service: str) -> T:
    """Run ``call`` in a worker thread; an SDK error becomes ``StateStoreError`` naming
    ``service`` ("Table storage", "Queue storage"). Our own errors pass through."""
    try:
        return await asyncio.to_thread(call)
    except StateStoreError:
        raise
    except AzureError as exc:
        raise StateStoreError(f"{service} failed: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """``Type: message`` of an SDK error, one line, with any SAS or key value blanked out
    (a URL in the message may carry a SAS)."""
    text = " ".join(str(exc).split())
    text = _ACCOUNT_KEY.sub(lambda m: f"{m.group(1)}=***", text)
    text = _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}=***", text)
    if len(text) > 500:
        text = text[:500] + "…"
    return f"{type(exc).__name__}: {text}"
