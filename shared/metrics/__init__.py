"""What the app measures: OpenTelemetry instruments for exporters, and a bounded window for the status page.

Two audiences read the same measurements:

- **Exporters** (Azure Monitor) get OpenTelemetry counters, histograms, observable gauges and spans, but
  only after ``install()`` (``configure_azure_monitor`` calls it when a connection string is set; tests
  call it with SDK providers and in-memory readers). Until then every ``record_*`` call is a ``None``
  check and ``span()`` returns a shared no-op context: no ``opentelemetry`` import, nothing measurable on
  hot paths such as an L1 cache hit.
- **The status page** (``get_metric_stats``) reads ``WINDOW``: per metric, a fixed-size ring buffer of the
  latest samples (min/max/avg/p50/p95/p99) and per-second event counts over the last five minutes. Memory
  is bounded by construction: fixed buffers, and at most ``max_series`` metric names.

Modules: ``names`` (metric names), ``windows`` (bounded ring buffers), ``expiry`` (the expiry gauge),
``state`` (this process's measurements), ``otel`` (instruments, spans), ``record`` (the ``record_*``
functions), ``listeners`` (adapters for the generic packages' events). Import from ``shared.metrics``;
``reset()`` empties every measurement and uninstalls OpenTelemetry (tests, between cases).

Metric names (attributes in braces), all prefixed ``graphapp.``:
``graph.calls`` {workload, outcome: ok|429|5xx|4xx|transport_error|breaker_rejected} (one per attempt),
``graph.call.duration`` s {workload, outcome}, ``graph.retries`` {workload, reason: 429|5xx|transport_error},
``breaker.transitions`` {breaker, state}, ``breaker.state`` gauge {breaker} (0 closed, 2 open, 3 isolated),
``cache.requests`` {result: hit-l1|hit-l2|stale|miss|negative-hit|failure}, ``webhook.ack.duration`` s,
``notifications`` {stage: accepted|dropped|published|duplicate|poisoned|failed},
``notifications.process.duration`` s, ``event_loop.lag`` s (sampled every 50 ms),
``subscription.expires_in`` gauge s {subscription, resource}.
"""

from __future__ import annotations

from shared.metrics import state
from shared.metrics.expiry import Expiry, ExpiryGauge, ExpiryLoader
from shared.metrics.listeners import CacheMetrics
from shared.metrics.names import (
    BREAKER_STATE,
    BREAKER_STATE_VALUES,
    BREAKER_TRANSITIONS,
    CACHE_REQUESTS,
    GRAPH_CALL_DURATION,
    GRAPH_CALLS,
    GRAPH_RETRIES,
    MAX_BREAKERS,
    NOTIFICATION_PROCESS_DURATION,
    NOTIFICATIONS,
    PREFIX,
    SUBSCRIPTION_EXPIRES_IN,
    WEBHOOK_ACK_DURATION,
    graph_outcome,
)
from shared.metrics.otel import (
    SpanHandle,
    configure_azure_monitor,
    error_type,
    ingestion_credential,
    install,
    invocation_span,
    span,
    traced,
    tracing,
    uninstall,
)
from shared.metrics.record import (
    get_metric_stats,
    note_breaker_state,
    record_breaker_transition,
    record_cache,
    record_graph_attempt,
    record_graph_retry,
    record_loop_lag,
    record_notifications,
    record_processing,
    record_processor_storage,
    record_webhook_ack,
)
from shared.metrics.state import EXPIRY, WINDOW
from shared.metrics.storage_spans import storage_span
from shared.metrics.windows import EventWindow, Reservoir, StatsWindow


def reset() -> None:
    """Forget every measurement and go back to the no-op OpenTelemetry state: one call, so each test
    starts from zero instead of from another test's leftovers."""
    state.clear()
    uninstall()


__all__ = [
    "BREAKER_STATE",
    "BREAKER_STATE_VALUES",
    "BREAKER_TRANSITIONS",
    "CACHE_REQUESTS",
    "EXPIRY",
    "GRAPH_CALLS",
    "GRAPH_CALL_DURATION",
    "GRAPH_RETRIES",
    "MAX_BREAKERS",
    "NOTIFICATIONS",
    "NOTIFICATION_PROCESS_DURATION",
    "PREFIX",
    "SUBSCRIPTION_EXPIRES_IN",
    "WEBHOOK_ACK_DURATION",
    "WINDOW",
    "CacheMetrics",
    "EventWindow",
    "Expiry",
    "ExpiryGauge",
    "ExpiryLoader",
    "Reservoir",
    "SpanHandle",
    "StatsWindow",
    "configure_azure_monitor",
    "error_type",
    "get_metric_stats",
    "graph_outcome",
    "ingestion_credential",
    "install",
    "invocation_span",
    "note_breaker_state",
    "record_breaker_transition",
    "record_cache",
    "record_graph_attempt",
    "record_graph_retry",
    "record_loop_lag",
    "record_notifications",
    "record_processing",
    "record_processor_storage",
    "record_webhook_ack",
    "reset",
    "span",
    "storage_span",
    "traced",
    "tracing",
    "uninstall",
]
