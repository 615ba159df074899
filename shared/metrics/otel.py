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


def configure_azure_monitor(connection_string: str) -> None:
    """Export traces, metrics and the app's logs to Application Insights (imports the exporter only now)."""
    from azure.monitor.opentelemetry import configure_azure_monitor as configure

    from shared.telemetry import protect_handlers

    configure(connection_string=connection_string, logger_name="graphapp")
    protect_handlers()  # the exporter's handler must redact and correlate like the console's
    install()


def span(name: str, attributes: Mapping[str, str] | None = None) -> AbstractContextManager[Any]:
    """A span around a unit of work when tracing is installed; otherwise a shared no-op context."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)
