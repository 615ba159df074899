"""The OpenTelemetry bridge: the app's instruments and tracer, present only after ``install()``.

Until ``install`` runs, ``instruments`` and the tracer are None, ``span()`` returns a shared no-op context
and nothing imports ``opentelemetry``: hot paths pay a ``None`` check, not an SDK call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
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
    from opentelemetry.trace import Span, Tracer, TracerProvider


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
# Sampling is decided once, by the Functions host (host.json samplingSettings), and passed to each invocation
# in the traceparent's sampled flag; the app's spans follow it (ParentBased: a sampled parent keeps its
# children, an unsampled one drops them; a span without a parent is kept).
_SAMPLER, _SAMPLER_ARG = "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"
HOST_DECIDES = "parentbased_always_on"
# Graph requests get this app's own HTTP client spans (shared/graph/http_spans.py, with tokens removed from
# url.full); the distro's httpx instrumentation would add a second span per request.
_INSTRUMENTATION = {"httpx": {"enabled": False}, "httpx2": {"enabled": False}}


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
    Spans follow the host's sampling decision (``HOST_DECIDES``).
    """
    import os

    from azure.monitor.opentelemetry import configure_azure_monitor as configure

    # The distro's only working switch for logs is this variable (its disable_logging argument is overwritten
    # from it); set for the call only, so nothing else in the process sees it.
    # Its sampler is chosen the same way (OTEL_TRACES_SAMPLER); without it the distro samples on its own (5
    # traces/s), ignoring the host's decision that arrives with the traceparent.
    for_the_call = {_LOGS_EXPORTER: "none", _SAMPLER: HOST_DECIDES, _SAMPLER_ARG: None}
    previous = {name: os.environ.get(name) for name in for_the_call}
    _set_environment(for_the_call)
    try:
        configure(
            connection_string=connection_string,
            credential=credential,
            enable_live_metrics=False,
            instrumentation_options=_INSTRUMENTATION,
        )
    finally:
        _set_environment(previous)
    install()


def _set_environment(values: Mapping[str, str | None]) -> None:
    import os

    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


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


def tracing() -> bool:
    """True once spans are recorded (callers skip building attributes otherwise)."""
    return _tracer is not None


class SpanHandle:
    """What a caller may do with its span: add attributes, mark it failed; a no-op without tracing."""

    def __init__(self, span: Span | None) -> None:
        self._span = span

    def set(self, key: str, value: str | int) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def fail(self, error_type: str) -> None:
        """``error.type`` (a status code or an exception's qualified class name) and an error status."""
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR))


_NO_HANDLE = SpanHandle(None)


def error_type(error: BaseException) -> str:
    """The conventions' ``error.type`` of an exception: its fully qualified class name."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


@contextlib.contextmanager
def traced(name: str, kind: str, attributes: Mapping[str, str | int]) -> Iterator[SpanHandle]:
    """A span of ``kind`` (``client``, ``producer``, ``consumer``, ``internal``) around the block; an exception
    leaving it sets ``error.type`` and the error status. Without tracing: the shared no-op handle."""
    if _tracer is None:
        yield _NO_HANDLE
        return
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(name, kind=SpanKind[kind.upper()], attributes=attributes) as span:
        handle = SpanHandle(span)
        try:
            yield handle
        except BaseException as error:
            handle.fail(error_type(error))
            raise
