"""The record functions the app calls: each feeds the status page's window and, once installed, OTel.

Names and signatures are what features (and listeners in the generic packages' adapters) call; keep them
stable. Each is cheap when no exporter is installed: a window update and a ``None`` check.
"""

from __future__ import annotations

from typing import Any

from shared.metrics import otel
from shared.metrics.names import BREAKER_STATE_VALUES, MAX_BREAKERS
from shared.metrics.state import WINDOW, breaker_states, cache_answers


def get_metric_stats() -> dict[str, Any]:
    """This process's recent measurements (what the status page shows)."""
    return WINDOW.snapshot()


def note_breaker_state(key: str, state: str) -> None:
    """Remember the breaker state this instance last read or wrote (reported by the ``breaker.state`` gauge)."""
    if key in breaker_states or len(breaker_states) < MAX_BREAKERS:
        breaker_states[key] = BREAKER_STATE_VALUES.get(state, -1)


def record_cache(result: str) -> None:
    """One cache answer. The L1-hit path is the hottest in the app and an SDK counter ``add`` costs more
    than the hit itself, so this only bumps a plain count; an observable counter reports the totals."""
    if result in cache_answers:
        cache_answers[result] += 1


def record_graph_attempt(workload: str, outcome: str, seconds: float | None) -> None:
    """One Graph attempt: sent (with its latency) or refused by the breaker (``seconds`` None)."""
    WINDOW.count(f"graph.{outcome}")
    if seconds is not None:
        WINDOW.observe("graph.call.ms", seconds * 1000)
    instruments = otel.instruments
    if instruments is not None:
        attributes = {"workload": workload, "outcome": outcome}
        instruments.graph_calls.add(1, attributes)
        if seconds is not None:
            instruments.graph_duration.record(seconds, attributes)


def record_graph_retry(workload: str, reason: str) -> None:
    WINDOW.count("graph.retries")
    if otel.instruments is not None:
        otel.instruments.graph_retries.add(1, {"workload": workload, "reason": reason})


def record_breaker_transition(key: str, state: str) -> None:
    """A state change this instance wrote (trip, probe result, operator action)."""
    note_breaker_state(key, state)
    WINDOW.count(f"breaker.{state}")
    if otel.instruments is not None:
        otel.instruments.breaker_transitions.add(1, {"breaker": key, "state": state})


def record_webhook_ack(seconds: float) -> None:
    WINDOW.observe("webhook.ack.ms", seconds * 1000)
    if otel.instruments is not None:
        otel.instruments.webhook_ack.record(seconds)


def record_notifications(stage: str, n: int, reason: str | None = None) -> None:
    """``n`` notifications reached ``stage`` (accepted, dropped with a reason, published, poisoned, ...); with a
    reason (a bounded set of codes) also counted per reason, so the status page says why."""
    if n <= 0:
        return
    WINDOW.count(f"notifications.{stage}", n)
    if reason is not None:
        WINDOW.count(f"notifications.{stage}.{reason}", n)
    if otel.instruments is not None:
        attributes = {"stage": stage} if reason is None else {"stage": stage, "reason": reason}
        otel.instruments.notifications.add(n, attributes)


def record_processing(seconds: float) -> None:
    WINDOW.observe("notifications.process.ms", seconds * 1000)
    if otel.instruments is not None:
        otel.instruments.process_duration.record(seconds)


def record_loop_lag(seconds: float) -> None:
    """One sample of the event loop's lag (``shared.loop_lag``)."""
    WINDOW.observe("event_loop.lag.ms", seconds * 1000)
    if otel.instruments is not None:
        otel.instruments.loop_lag.record(seconds)


def record_processor_storage(calls: int, items: int, conflicts: int = 0, redelivered: bool = False) -> None:
    """The Storage calls one delivery of a ``graph-notifications`` message made, its items, the calls
    answered 409/412, and whether it was a redelivery (the benchmarks divide the totals per item)."""
    WINDOW.count("processor.storage_calls", calls)
    WINDOW.count("processor.items", items)
    WINDOW.count("processor.storage_conflicts", conflicts)
    WINDOW.count("processor.redeliveries", int(redelivered))
