"""One invocation of a user function: its arguments, its timeout, then its queue outputs.

As the Python worker does, each output binding gets an ``Out`` (``$return`` is the return
value), a sync function runs in a thread, and the call is bounded by host.json
``functionTimeout``. What the function set is sent only after it returned normally; a
function that raises sends nothing
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-output).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import azure.functions as func

from shared.host.context import InvocationContext, Out
from shared.host.functions import FunctionSpec

__all__ = ["Send", "invoke", "output_texts"]

# (connection setting, queue name, texts) -> None: how the outputs reach their queue
Send = Callable[[str, str, Sequence[str]], Awaitable[None]]


def output_texts(spec: FunctionSpec, binding: str, value: Any) -> list[str]:
    """The texts an output binding was set to: a str, bytes, QueueMessage or a list of them."""
    items: Iterable[Any]
    if isinstance(value, str | bytes | func.QueueMessage):
        items = [value]
    elif isinstance(value, Iterable):
        items = value
    else:
        raise TypeError(
            f"function {spec.name}: output {binding!r} was set to {type(value).__name__}; "
            "expected str, bytes, QueueMessage or a list of them"
        )
    return [_text(spec, binding, item) for item in items]


def _text(spec: FunctionSpec, binding: str, item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes):
        return item.decode("utf-8")
    if isinstance(item, func.QueueMessage):
        return item.get_body().decode("utf-8")
    raise TypeError(
        f"function {spec.name}: output {binding!r} holds a {type(item).__name__}; "
        "expected str, bytes or QueueMessage"
    )


async def _call(spec: FunctionSpec, kwargs: dict[str, Any], timeout: float | None) -> Any:
    if spec.is_async:
        return await asyncio.wait_for(spec.user_function(**kwargs), timeout)
    # like the worker: sync functions run in a thread (not stopped on timeout)
    return await asyncio.wait_for(asyncio.to_thread(spec.user_function, **kwargs), timeout)


async def invoke(
    spec: FunctionSpec, trigger_value: Any, *, timeout: float | None, send: Send
) -> dict[str, list[str]]:
    """Call the user function; on success send its queue outputs; return what was sent,
    by queue. An exception from the function propagates and nothing is sent."""
    outs: dict[str, Out[Any]] = {}
    kwargs: dict[str, Any] = {spec.trigger.name: trigger_value}
    for binding in spec.outputs:
        if binding.name != "$return":
            outs[binding.name] = kwargs[binding.name] = Out[Any]()
    if spec.wants_context:
        kwargs["context"] = InvocationContext(spec.name, str(Path.cwd()))
    result = await _call(spec, kwargs, timeout)
    sent: dict[str, list[str]] = {}
    for binding in spec.outputs:
        if binding.name == "$return":
            value, was_set = result, result is not None
        else:
            value, was_set = outs[binding.name].get(), outs[binding.name].was_set
        if not was_set or value is None:
            continue
        texts = output_texts(spec, binding.name, value)
        if texts:
            await send(binding.connection, binding.queue_name, texts)
            sent.setdefault(binding.queue_name, []).extend(texts)
    return sent
