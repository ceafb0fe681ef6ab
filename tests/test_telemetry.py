"""OpenTelemetry: nothing imported and nothing recorded when off; spans and metrics, joined to
the invocation's trace, when on (the SDK's in-memory exporters stand in for Azure Monitor)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AccessTokenInfo
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.auth.token_cache import TokenCache

ROOT = Path(__file__).resolve().parents[1]
TENANT = "11111111-1111-1111-1111-111111111111"
SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture
def recorded() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry.enable(tracer_provider, MeterProvider(metric_readers=[reader]))
    try:
        yield spans, reader
    finally:
        telemetry.disable()


def _counter(reader: InMemoryMetricReader, name: str) -> float:
    data = reader.get_metrics_data()
    total = 0.0
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint), point
                        total += point.value
    return total


def test_off_imports_nothing_and_records_nothing() -> None:
    code = (
        "import sys, function_app\n"
        "from shared import telemetry\n"
        "with telemetry.span('x', tenant='t'):\n"
        "    telemetry.add('daemon.operations', 3)\n"
        "    telemetry.record('daemon.queue_age', 1.5)\n"
        "print(telemetry.enabled(), any(m.startswith('opentelemetry') for m in sys.modules))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_setting_turns_it_on_with_the_global_providers() -> None:
    code = (
        "from shared import telemetry\n"
        "with telemetry.span('x') as s:\n"
        "    print(telemetry.enabled(), s is not None)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]


def test_span_joins_the_invocation_trace(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, _ = recorded
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = f"00-{trace_id}-b7ad6b7169203331-01"
    with telemetry.span("daemon.job", traceparent=parent, job="provision", tenant=TENANT):
        pass
    (span,) = spans.get_finished_spans()
    assert span.name == "daemon.job"
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert span.attributes == {"job": "provision", "tenant": TENANT}


async def test_token_requests_are_spans_and_counted_once_per_request(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, reader = recorded
    calls = 0

    def fetch(tenant: str, scope: str) -> AccessTokenInfo:
        nonlocal calls
        calls += 1
        time.sleep(0.01)
        return AccessTokenInfo("token-value-not-logged", int(time.time()) + 3600)

    cache = TokenCache(fetch, default_tenant=TENANT, default_scope=SCOPE, allowed_tenants=(TENANT,))
    await asyncio.gather(*(cache.get_token(TENANT, SCOPE) for _ in range(20)))
    assert calls == 1
    assert [s.name for s in spans.get_finished_spans()] == ["daemon.token"]
    assert _counter(reader, "daemon.token_requests") == 1
