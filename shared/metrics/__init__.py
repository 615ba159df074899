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

Metric names (attributes in braces), all prefixed ``graphapp.``:
``graph.calls`` {workload, outcome: ok|429|5xx|4xx|transport_error|breaker_rejected} (one per attempt),
``graph.call.duration`` s {workload, outcome}, ``graph.retries`` {workload, reason: 429|5xx|transport_error},
``breaker.transitions`` {breaker, state}, ``breaker.state`` gauge {breaker} (0 closed, 2 open, 3 isolated),
``cache.requests`` {result: hit-l1|hit-l2|stale|miss|negative-hit|failure}, ``webhook.ack.duration`` s,
``notifications`` {stage: accepted|dropped|published|duplicate|poisoned|failed},
``notifications.process.duration`` s, ``subscription.expires_in`` gauge s {subscription, resource}.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, MeterProvider, Observation
    from opentelemetry.trace import Tracer, TracerProvider

PREFIX = "graphapp."
GRAPH_CALLS = PREFIX + "graph.calls"
GRAPH_CALL_DURATION = PREFIX + "graph.call.duration"
GRAPH_RETRIES = PREFIX + "graph.retries"
BREAKER_TRANSITIONS = PREFIX + "breaker.transitions"
BREAKER_STATE = PREFIX + "breaker.state"
CACHE_REQUESTS = PREFIX + "cache.requests"
WEBHOOK_ACK_DURATION = PREFIX + "webhook.ack.duration"
NOTIFICATIONS = PREFIX + "notifications"
NOTIFICATION_PROCESS_DURATION = PREFIX + "notifications.process.duration"
SUBSCRIPTION_EXPIRES_IN = PREFIX + "subscription.expires_in"

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2, "isolated": 3}
MAX_BREAKERS = 256  # breaker keys are code constants; the bound only guards against a caller's mistake


def graph_outcome(status: int) -> str:
    """The ``outcome`` attribute of one Graph response: few values, so dashboards can group by it."""
    if 200 <= status < 400:
        return "ok"
    if status == 429:
        return "429"
    return "5xx" if status >= 500 else "4xx"


# --- the bounded in-process window --------------------------------------------------------------------


class Reservoir:
    """The latest ``size`` samples of one metric in a ring buffer, plus the count of all samples ever."""

    def __init__(self, size: int) -> None:
        self._values = array("d", [0.0]) * size
        self._next = 0
        self.count = 0
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values[self._next] = value
            self._next = (self._next + 1) % len(self._values)
            self.count += 1

    def summary(self) -> dict[str, float | int]:
        """count (all time), window (samples summarised), min, max, avg, p50, p95, p99 (nearest rank)."""
        with self._lock:
            held = min(self.count, len(self._values))
            values = sorted(self._values[:held])
            count = self.count
        if not values:
            return {"count": 0, "window": 0}

        def rank(p: float) -> float:
            return values[max(0, math.ceil(p * len(values)) - 1)]

        return {
            "count": count,
            "window": len(values),
            "min": values[0],
            "max": values[-1],
            "avg": sum(values) / len(values),
            "p50": rank(0.50),
            "p95": rank(0.95),
            "p99": rank(0.99),
        }


class EventWindow:
    """Event counts per ``bucket_seconds`` over the last ``window_seconds``: a fixed ring of buckets."""

    def __init__(self, window_seconds: float, bucket_seconds: float, clock: Callable[[], float]) -> None:
        self.bucket_seconds = bucket_seconds
        self._slots = max(1, math.ceil(window_seconds / bucket_seconds))
        self._ids = [-1] * self._slots
        self._counts = [0] * self._slots
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        bucket = int(self._clock() // self.bucket_seconds)
        slot = bucket % self._slots
        with self._lock:
            if self._ids[slot] != bucket:
                self._ids[slot], self._counts[slot] = bucket, 0
            self._counts[slot] += n

    def series(self) -> list[int]:
        """Counts per bucket, oldest first, ending with the current bucket."""
        current = int(self._clock() // self.bucket_seconds)
        with self._lock:
            by_id = dict(zip(self._ids, self._counts, strict=True))
        return [by_id.get(b, 0) for b in range(current - self._slots + 1, current + 1)]


class StatsWindow:
    """Named reservoirs and event windows, created on first use, at most ``max_series`` of each."""

    def __init__(
        self,
        *,
        samples: int = 1024,
        window_seconds: float = 300.0,
        bucket_seconds: float = 10.0,
        max_series: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.samples = samples
        self.window_seconds = window_seconds
        self.bucket_seconds = bucket_seconds
        self.max_series = max_series
        self._clock = clock
        self._reservoirs: dict[str, Reservoir] = {}
        self._events: dict[str, EventWindow] = {}
        self._lock = threading.Lock()

    def observe(self, name: str, value: float) -> None:
        """Add a sample (dropped if ``name`` would be a series beyond ``max_series``)."""
        reservoir = self._reservoirs.get(name)
        if reservoir is None:
            with self._lock:
                if name not in self._reservoirs and len(self._reservoirs) >= self.max_series:
                    return
                reservoir = self._reservoirs.setdefault(name, Reservoir(self.samples))
        reservoir.add(value)

    def count(self, name: str, n: int = 1) -> None:
        """Count ``n`` events now (dropped if ``name`` would be a series beyond ``max_series``)."""
        window = self._events.get(name)
        if window is None:
            with self._lock:
                if name not in self._events and len(self._events) >= self.max_series:
                    return
                window = self._events.setdefault(
                    name, EventWindow(self.window_seconds, self.bucket_seconds, self._clock)
                )
        window.add(n)

    def snapshot(self) -> dict[str, Any]:
        """Distributions and event counts (with their per-bucket series), JSON-ready."""
        with self._lock:
            reservoirs, events = dict(self._reservoirs), dict(self._events)
        return {
            "window_seconds": self.window_seconds,
            "bucket_seconds": self.bucket_seconds,
            "distributions": {name: r.summary() for name, r in sorted(reservoirs.items())},
            "events": {name: _event_summary(w.series()) for name, w in sorted(events.items())},
        }


def _event_summary(series: list[int]) -> dict[str, Any]:
    return {"total": sum(series), "series": series}


WINDOW = StatsWindow()


def get_metric_stats() -> dict[str, Any]:
    """This process's recent measurements (what the status page shows)."""
    return WINDOW.snapshot()


# --- observable state ---------------------------------------------------------------------------------

_breaker_states: dict[str, int] = {}


def note_breaker_state(key: str, state: str) -> None:
    """Remember the breaker state this instance last read or wrote (reported by the ``breaker.state`` gauge)."""
    if key in _breaker_states or len(_breaker_states) < MAX_BREAKERS:
        _breaker_states[key] = BREAKER_STATE_VALUES.get(state, -1)


@dataclass(frozen=True)
class Expiry:
    subscription_id: str
    resource: str
    expires_at: float  # epoch seconds


ExpiryLoader = Callable[[], Awaitable[Iterable[Expiry]]]


class ExpiryGauge:
    """Seconds until each subscription expires, from a copy of the registry refreshed at most every
    ``refresh_seconds``. The gauge's callback runs on the exporter's thread and cannot await a table read,
    so it computes from the copy and, when the copy is old, schedules a refresh on the app's event loop."""

    def __init__(self, refresh_seconds: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._expiries: tuple[Expiry, ...] = ()
        self._loaded_at = -math.inf
        self._loader: ExpiryLoader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refreshing = False

    def watch(self, loader: ExpiryLoader, loop: asyncio.AbstractEventLoop) -> None:
        """Refresh the copy through ``loader`` on ``loop`` when it is older than ``refresh_seconds``."""
        self._loader, self._loop = loader, loop

    def update(self, expiries: Iterable[Expiry]) -> None:
        self._expiries = tuple(expiries)
        self._loaded_at = self._clock()

    async def refresh(self) -> None:
        """Read the registry now (the loader's failures keep the previous copy)."""
        if self._loader is None or self._refreshing:
            return
        self._refreshing = True
        try:
            self.update(await self._loader())
        except Exception:  # a storage hiccup must not break metric collection; the next cycle retries
            self._loaded_at = self._clock()
        finally:
            self._refreshing = False

    def observe(self) -> list[tuple[float, dict[str, str]]]:
        """(seconds to expiry, attributes) per subscription; schedules a refresh when the copy is old."""
        if self._clock() - self._loaded_at >= self.refresh_seconds and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process is shutting down
                asyncio.run_coroutine_threadsafe(self.refresh(), self._loop)
        now = self._clock()
        return [
            (e.expires_at - now, {"subscription": e.subscription_id, "resource": e.resource}) for e in self._expiries
        ]


EXPIRY = ExpiryGauge()


# --- OpenTelemetry ------------------------------------------------------------------------------------


class _Instruments:
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
        meter.create_observable_counter(CACHE_REQUESTS, [_observe_cache], "{request}", "cache answers by source")
        meter.create_observable_gauge(BREAKER_STATE, [_observe_breakers], "1", "0 closed, 2 open, 3 isolated")
        meter.create_observable_gauge(SUBSCRIPTION_EXPIRES_IN, [_observe_expiry], "s", "time to subscription expiry")


def _observe_cache(options: CallbackOptions) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(count, {"result": result}) for result, count in list(_cache_answers.items())]


def _observe_breakers(options: CallbackOptions) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(value, {"breaker": key}) for key, value in list(_breaker_states.items())]


def _observe_expiry(options: CallbackOptions) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(value, attributes) for value, attributes in EXPIRY.observe()]


_instruments: _Instruments | None = None
_tracer: Tracer | None = None
_NO_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()


def install(meter_provider: MeterProvider | None = None, tracer_provider: TracerProvider | None = None) -> None:
    """Start recording to these providers (the global ones when None, e.g. after Azure Monitor set them)."""
    global _instruments, _tracer
    from opentelemetry import metrics, trace

    _instruments = _Instruments(meter_provider or metrics.get_meter_provider())
    _tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("graphapp")


def uninstall() -> None:
    """Back to the no-op state (tests)."""
    global _instruments, _tracer
    _instruments, _tracer = None, None


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


# --- recording ----------------------------------------------------------------------------------------

_cache_answers = dict.fromkeys(("hit-l1", "hit-l2", "stale", "miss", "negative-hit", "failure"), 0)


def record_cache(result: str) -> None:
    """One cache answer. The L1-hit path is the hottest in the app and an SDK counter ``add`` costs more
    than the hit itself, so this only bumps a plain count; an observable counter reports the totals."""
    if result in _cache_answers:
        _cache_answers[result] += 1


def record_graph_attempt(workload: str, outcome: str, seconds: float | None) -> None:
    """One Graph attempt: sent (with its latency) or refused by the breaker (``seconds`` None)."""
    WINDOW.count(f"graph.{outcome}")
    if seconds is not None:
        WINDOW.observe("graph.call.ms", seconds * 1000)
    if _instruments is not None:
        attributes = {"workload": workload, "outcome": outcome}
        _instruments.graph_calls.add(1, attributes)
        if seconds is not None:
            _instruments.graph_duration.record(seconds, attributes)


def record_graph_retry(workload: str, reason: str) -> None:
    WINDOW.count("graph.retries")
    if _instruments is not None:
        _instruments.graph_retries.add(1, {"workload": workload, "reason": reason})


def record_breaker_transition(key: str, state: str) -> None:
    """A state change this instance wrote (trip, probe result, operator action)."""
    note_breaker_state(key, state)
    WINDOW.count(f"breaker.{state}")
    if _instruments is not None:
        _instruments.breaker_transitions.add(1, {"breaker": key, "state": state})


def record_webhook_ack(seconds: float) -> None:
    WINDOW.observe("webhook.ack.ms", seconds * 1000)
    if _instruments is not None:
        _instruments.webhook_ack.record(seconds)


def record_notifications(stage: str, n: int, reason: str | None = None) -> None:
    """``n`` notifications reached ``stage`` (accepted, dropped with a reason, published, poisoned, ...)."""
    if n <= 0:
        return
    WINDOW.count(f"notifications.{stage}", n)
    if _instruments is not None:
        attributes = {"stage": stage} if reason is None else {"stage": stage, "reason": reason}
        _instruments.notifications.add(n, attributes)


def record_processing(seconds: float) -> None:
    WINDOW.observe("notifications.process.ms", seconds * 1000)
    if _instruments is not None:
        _instruments.process_duration.record(seconds)
