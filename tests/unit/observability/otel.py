"""OpenTelemetry SDK providers with in-memory readers, installed into ``shared.metrics`` for one test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import metrics


class Recorded:
    """What the app emitted while installed: metric points by name, finished spans."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.spans = InMemorySpanExporter()
        tracing = TracerProvider()
        tracing.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer_provider = tracing

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        """(attributes, value) of every point of metric ``name`` (sums, gauges; histograms give their count)."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], float]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        found.append((dict(point.attributes or {}), value if value is not None else point.count))
        return found

    def value(self, name: str, **attributes: str) -> float:
        """The sum of ``name``'s points whose attributes include ``attributes``."""
        return sum(v for attrs, v in self.points(name) if attributes.items() <= attrs.items())

    def span_names(self) -> list[str]:
        finished: tuple[ReadableSpan, ...] = self.spans.get_finished_spans()
        return [span.name for span in finished]


def recording() -> Iterator[Recorded]:
    """Install SDK providers for the duration of a test; back to no-op afterwards."""
    recorded = Recorded()
    metrics.install(recorded.meter_provider, recorded.tracer_provider)
    try:
        yield recorded
    finally:
        metrics.uninstall()
        recorded.meter_provider.shutdown()
        recorded.tracer_provider.shutdown()
