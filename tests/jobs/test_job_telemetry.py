"""A job run's telemetry: a ``daemon.job`` span in the invocation's trace, operation and
queue-age metrics (in-memory exporters stand in for Azure Monitor)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.jobs.dispatch import handle_queue_message
from shared.jobs.envelope import JobMessage
from tests.jobs.conftest import Stack

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def recorded() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry.enable(provider, MeterProvider(metric_readers=[reader]))
    try:
        yield spans, reader
    finally:
        telemetry.disable()


def _points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, str], float]]:
    data = reader.get_metrics_data()
    out: list[tuple[dict[str, str], float]] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        value = point.sum if isinstance(point, HistogramDataPoint) else None
                        if value is None:
                            value = getattr(point, "value", None)
                        assert value is not None, point
                        attributes = {k: str(v) for k, v in (point.attributes or {}).items()}
                        out.append((attributes, float(value)))
    return out


async def test_job_span_joins_the_invocation_and_counts_operations(
    stack: Stack, recorded: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    spans, reader = recorded
    tenant = stack.seed.home_tenant_id
    users = stack.graph.directory.seed_users(tenant, 3)
    body = JobMessage.new(
        "operations",
        tenant,
        {
            "operations": [
                {
                    "id": f"op{i}",
                    "method": "PATCH",
                    "url": f"/users/{u['id']}",
                    "body": {"jobTitle": "Telemetry"},
                }
                for i, u in enumerate(users)
            ]
        },
        correlation_id="corr-telemetry",
    ).to_json()
    inserted = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
    summary = await handle_queue_message(
        body, message_id="m-telemetry", traceparent=TRACEPARENT, inserted_at=inserted
    )
    assert summary is not None
    assert summary.applied == 3
    jobs = [s for s in spans.get_finished_spans() if s.name == "daemon.job"]
    assert len(jobs) == 1
    assert f"{jobs[0].context.trace_id:032x}" == TRACE_ID
    assert jobs[0].attributes is not None
    assert jobs[0].attributes["correlation_id"] == "corr-telemetry"
    batches = [s for s in spans.get_finished_spans() if s.name == "daemon.batch"]
    assert batches
    assert all(s.context.trace_id == jobs[0].context.trace_id for s in batches)
    assert sum(int(str((s.attributes or {})["items"])) for s in batches) >= 3
    succeeded = [v for a, v in _points(reader, "daemon.operations") if a["outcome"] == "succeeded"]
    assert succeeded == [3.0]
    [(_, waited)] = _points(reader, "daemon.queue_age")
    assert waited >= 30
