"""The OpenTelemetry bridge: the app's instruments and tracer, present only after ``install()``.

Until ``install`` runs, ``instruments`` and the tracer are None, ``span()`` returns a shared no-op context
and nothing imports ``opentelemetry``: hot paths pay a ``None`` check, not an SDK call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from shared.metrics import state
from shared.metrics.names import (
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    CACHE_REQUESTS,
    EVENT_LOOP_LAG,
    GRAPH_CALL_DURATION,
    GRAPH_CALLS,
    GRAPH_RETRIES,
    NOTIFICATION_PROCESS_DURATION,
    NOTIFICATIONS,
    SUBSCRIPTION_EXPIRES_IN,
    WEBHOOK_ACK_DURATION,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, MeterProvider, Observation
    from opentelemetry.trace import Tracer, TracerProvider


class Instruments:
    """The app's instruments on one meter (rebuilt whenever ``install`` is called)."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("graphapp")
        self.graph_calls: Counter = meter.create_counter(GRAPH_CALLS, "{call}", "Graph attempts by outcome")
        self.graph_duration: Histogram = meter.create_histogram(GRAPH_CALL_DURATION, "s", "Graph attempt latency")
        self.graph_retries: Counter = meter.create_counter(GRAPH_RETRIES, "{retry}", "Graph retries by reason")
        self.breaker_transitions: Counter = meter.create_counter(
            BREAKER_TRANSITIONS, "{transition}", "breaker state changes written by this instance"
        )
        self.webhook_ack: Histogram = meter.create_histogram(WEBHOOK_ACK_DURATION, "s", "webhook persist-and-ack time")
        self.notifications: Counter = meter.create_counter(NOTIFICATIONS, "{notification}", "notifications by stage")
        self.process_duration: Histogram = meter.create_histogram(
            NOTIFICATION_PROCESS_DURATION, "s", "time to process one queue message"
        )
        self.loop_lag: Histogram = meter.create_histogram(
            EVENT_LOOP_LAG, "s", "how late the event loop ran a callback that was due (sampled)"
        )
        meter.create_observable_counter(CACHE_REQUESTS, [_observe_cache], "{request}", "cache answers by source")
        meter.create_observable_gauge(BREAKER_STATE, [_observe_breakers], "1", "0 closed, 2 open, 3 isolated")
        meter.create_observable_gauge(SUBSCRIPTION_EXPIRES_IN, [_observe_expiry], "s", "time to subscription expiry")


def _observe_cache(options: CallbackOptions) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(count, {"result": result}) for result, count in list(state.cache_answers.items())]


def _observe_breakers(options: CallbackOptions) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(value, {"breaker": key}) for key, value in list(state.breaker_states.items())]


def _observe_expiry(options: CallbackOptions) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(value, attributes) for value, attributes in state.EXPIRY.observe()]


instruments: Instruments | None = None
_tracer: Tracer | None = None
_NO_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()
_LOGS_EXPORTER = "OTEL_LOGS_EXPORTER"


def install(meter_provider: MeterProvider | None = None, tracer_provider: TracerProvider | None = None) -> None:
    """Start recording to these providers (the global ones when None, e.g. after Azure Monitor set them)."""
    global instruments, _tracer
    from opentelemetry import metrics, trace

    instruments = Instruments(meter_provider or metrics.get_meter_provider())
    _tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("graphapp")


def uninstall() -> None:
    """Back to the no-op state (tests)."""
    global instruments, _tracer
    instruments, _tracer = None, None


def ingestion_credential(authentication_string: str | None) -> TokenCredential | None:
    """Entra authentication for Application Insights ingestion, from the host's own setting
    (``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``: ``Authorization=AAD`` or ``Authorization=AAD;ClientId=<id>``),
    so the app and the host authenticate the same way; None keeps the connection string's key-based ingestion."""
    if not authentication_string:
        return None
    from azure.identity import ManagedIdentityCredential

    parts = dict(part.split("=", 1) for part in authentication_string.split(";") if "=" in part)
    return ManagedIdentityCredential(client_id=parts.get("ClientId") or None)


def configure_azure_monitor(connection_string: str, credential: TokenCredential | None = None) -> None:
    """Export the app's spans and metrics to Application Insights (imports the exporter only now).

    Logs are not exported here: the worker forwards every record to the Functions host, which exports it
    with host.json's levels and sampling, so a second exporter in the app would send each record twice.
    """
    import os

    from azure.monitor.opentelemetry import configure_azure_monitor as configure

    # The distro's only working switch for logs is this variable (its disable_logging argument is overwritten
    # from it); set for the call only, so nothing else in the process sees it.
    previous = os.environ.get(_LOGS_EXPORTER)
    os.environ[_LOGS_EXPORTER] = "none"
    try:
        configure(connection_string=connection_string, credential=credential, enable_live_metrics=False)
    finally:
        if previous is None:
            os.environ.pop(_LOGS_EXPORTER, None)
        else:
            os.environ[_LOGS_EXPORTER] = previous
    install()


def invocation_span(
    name: str, invocation_id: str, trigger: str, trace_parent: str | None, trace_state: str | None = None
) -> AbstractContextManager[Any]:
    """The span of one invocation, a child of the host's invocation trace (``context.trace_context``), so the
    app's spans join the host's request or dependency in one end-to-end transaction; a no-op until installed.

    ``trigger`` is the FaaS semantic convention's ``faas.trigger`` (http, pubsub, timer).
    """
    if _tracer is None:
        return _NO_SPAN
    from opentelemetry.propagate import extract

    carrier = {"traceparent": trace_parent or "", "tracestate": trace_state or ""}
    attributes = {"faas.invocation_id": invocation_id, "faas.trigger": trigger}
    return _tracer.start_as_current_span(name, context=extract(carrier), attributes=attributes)


def span(name: str, attributes: Mapping[str, str] | None = None) -> AbstractContextManager[Any]:
    """A span around a unit of work when tracing is installed; otherwise a shared no-op context."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)
