"""The ``azure.functions`` objects the runner hands to a function: ``Out`` and ``Context``.

The Python worker gives each invocation an ``Out`` per output binding and, when the function
has a ``context`` parameter, a ``Context`` with a fresh W3C trace context
(https://learn.microsoft.com/azure/azure-functions/functions-reference-python#context).
These are the runner's concrete versions of those abstract classes.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, Generic, TypeVar

import azure.functions as func
from azure.functions import _abc

__all__ = ["InvocationContext", "Out", "TraceContext", "new_trace_parent"]

T = TypeVar("T")


class Out(func.Out[T], Generic[T]):
    """A concrete ``azure.functions.Out``: what the function sets, for the runner to send."""

    def __init__(self) -> None:
        self._value: T | None = None
        self.was_set = False

    def set(self, val: T) -> None:
        self._value = val
        self.was_set = True

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


def new_trace_parent() -> str:
    """A sampled W3C ``traceparent`` with a new trace id and span id
    (https://www.w3.org/TR/trace-context/#traceparent-header)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class TraceContext(_abc.TraceContext):
    """The invocation's trace context: a ``traceparent``, no state, no attributes."""

    def __init__(self, trace_parent: str) -> None:
        self._trace_parent = trace_parent

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class InvocationContext(func.Context):
    """``func.Context`` for one invocation: a new invocation id and a new trace."""

    def __init__(self, function_name: str, directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._directory = directory
        self._trace = TraceContext(new_trace_parent())

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def thread_local_storage(self) -> Any:
        return None

    @property
    def trace_context(self) -> Any:
        """A fresh W3C trace per invocation, as the host starts one for each."""
        return self._trace

    @property
    def retry_context(self) -> Any:
        return None
