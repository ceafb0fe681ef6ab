"""OpenTelemetry spans and metrics, at no cost when telemetry is off.

In Azure, the Python worker configures OpenTelemetry itself when the app setting
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`` is ``true``, host.json says
``"telemetryMode": "OpenTelemetry"`` and azure-monitor-opentelemetry is installed
(https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto). The daemon never
calls ``configure_azure_monitor()`` a second time: it only asks the global providers for a
tracer and a meter. With the setting off (locally, in tests, as a plain daemon) this module
imports nothing from OpenTelemetry and every call here is a cheap no-op.

What is recorded (names are stable; dashboards may rely on them):

spans
    ``daemon.job`` (job, tenant, correlation id; child of the invocation's trace context so
    our logs and spans join the host's), ``daemon.batch`` (items, status),
    ``daemon.token`` (tenant; a real token request, never a cache hit),
    ``daemon.keyvault`` (operation, object name).
metrics (counters unless noted)
    ``daemon.operations`` (outcome: succeeded | failed | gave_up), ``daemon.throttled``
    (429 answers), ``daemon.token_requests``, ``daemon.queue_age`` (histogram, seconds a job
    message waited in the queue).

Tests (and the offline host) call :func:`enable` with their own providers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "ENABLE_SETTING",
    "add",
    "disable",
    "enable",
    "enabled",
    "record",
    "span",
]

ENABLE_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
_SCOPE = "graph-daemon"
_TRUE = {"true", "1", "yes", "on"}

_lock = threading.Lock()
_state: _Telemetry | None = None
_decided = False


class _Telemetry:
    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import metrics, trace

        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_SCOPE)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE)
        self.counters = {
            "daemon.operations": meter.create_counter(
                "daemon.operations", unit="{operation}", description="operations settled"
            ),
            "daemon.throttled": meter.create_counter(
                "daemon.throttled", unit="{response}", description="429 answers"
            ),
            "daemon.token_requests": meter.create_counter(
                "daemon.token_requests", unit="{request}", description="token endpoint calls"
            ),
        }
        self.histograms = {
            "daemon.queue_age": meter.create_histogram(
                "daemon.queue_age", unit="s", description="time a job message waited"
            ),
        }


def enable(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Record from now on, to the given providers (default: the global ones)."""
    global _state, _decided
    with _lock:
        _state = _Telemetry(tracer_provider, meter_provider)
        _decided = True


def disable() -> None:
    """Record nothing from now on (and forget the providers)."""
    global _state, _decided
    with _lock:
        _state = None
        _decided = True


def _current() -> _Telemetry | None:
    global _state, _decided
    if _decided:
        return _state
    with _lock:
        if not _decided:
            if os.environ.get(ENABLE_SETTING, "").strip().lower() in _TRUE:
                try:
                    _state = _Telemetry()
                except ImportError:  # the package is missing: run without telemetry
                    _state = None
            _decided = True
    return _state


def enabled() -> bool:
    return _current() is not None


@contextlib.contextmanager
def span(
    name: str, *, traceparent: str | None = None, **attributes: str | int | float | bool | None
) -> Iterator[Any]:
    """A span named ``name`` (a no-op when telemetry is off). ``traceparent`` (W3C) makes it a
    child of that trace: the Functions invocation's ``context.trace_context.trace_parent``."""
    state = _current()
    if state is None:
        yield None
        return
    parent_context = None
    if traceparent:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent_context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    clean = {k: v for k, v in attributes.items() if v is not None}
    with state.tracer.start_as_current_span(name, context=parent_context, attributes=clean) as s:
        yield s


def add(metric: str, value: int = 1, attributes: Mapping[str, str] | None = None) -> None:
    """Add ``value`` to the counter ``metric`` (a no-op when telemetry is off)."""
    state = _current()
    if state is None or value == 0:
        return
    state.counters[metric].add(value, attributes=dict(attributes or {}))


def record(metric: str, value: float, attributes: Mapping[str, str] | None = None) -> None:
    """Record ``value`` in the histogram ``metric`` (a no-op when telemetry is off)."""
    state = _current()
    if state is None:
        return
    state.histograms[metric].record(value, attributes=dict(attributes or {}))
