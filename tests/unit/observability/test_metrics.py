"""The metrics and spans the app's components emit (OpenTelemetry SDK with in-memory readers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared import metrics
from shared.cache import CacheKey, CacheManager, TableTier
from shared.errors import UnavailableError
from shared.events.webhook import NotificationWebhook
from shared.metrics.breakers import BreakerMetrics
from shared.resilience import BreakerPolicy, BreakerRegistry, MemoryBreakerStore
from tests.unit.cache.conftest import POLICY, Upstream
from tests.unit.cache.fakes import FakeClock, FakeTableClient
from tests.unit.events import samples
from tests.unit.events.fakes import FakeQueues, FakeRegistry
from tests.unit.observability.otel import Recorded

ROOT = Path(__file__).resolve().parents[3]


async def test_cache_hit_is_counted_by_tier(otel: Recorded) -> None:
    """A miss then a repeat read count one ``miss`` and one ``hit-l1`` (through the listener the wiring
    attaches); the miss's load is a span."""
    table, clock = FakeTableClient(), FakeClock()

    async def client() -> Any:  # a fake of the SDK's TableClient
        return table

    tier = TableTier(client, clock=clock, timeout=1.0)
    manager = CacheManager(tier, POLICY, clock=clock, listener=metrics.CacheMetrics())
    key = CacheKey("users", "alice")
    await manager.get_or_set(key, Upstream({"id": "alice"}))
    await manager.get_or_set(key, Upstream({"id": "alice"}))
    await manager.aclose()
    assert otel.value(metrics.CACHE_REQUESTS, result="hit-l1") == 1
    assert otel.value(metrics.CACHE_REQUESTS, result="miss") == 1
    assert "cache.load" in otel.span_names()


async def test_breaker_trip_counts_a_transition_and_sets_the_state_gauge(otel: Recorded) -> None:
    """Two consecutive failures with ``consecutive_failures=2`` write ``open``: one transition, gauge 2."""
    policy = BreakerPolicy(consecutive_failures=2, state_cache_seconds=0, flush_interval_seconds=0)
    breaker = BreakerRegistry(MemoryBreakerStore(), policy, listeners=[BreakerMetrics()]).get("unit-breaker")

    async def failing() -> None:
        raise UnavailableError("down")

    for _ in range(2):
        with pytest.raises(UnavailableError):
            await breaker.call(failing)
    assert otel.value(metrics.BREAKER_TRANSITIONS, breaker="unit-breaker", state="open") == 1
    assert otel.value(metrics.BREAKER_STATE, breaker="unit-breaker") == metrics.BREAKER_STATE_VALUES["open"]


async def test_webhook_counts_accepted_and_dropped_items_and_times_the_ack(otel: Recorded) -> None:
    """One good item and one with a wrong clientState: accepted 1, dropped 1 (by reason), one ack latency."""
    webhook = NotificationWebhook(FakeRegistry({samples.SUBSCRIPTION: samples.SECRET}), FakeQueues())  # type: ignore[arg-type]
    body = {"value": [samples.user_change(), samples.user_change(secret="wrong")]}
    await webhook.accept(json.dumps(body).encode())
    assert otel.value(metrics.NOTIFICATIONS, stage="accepted") == 1
    assert otel.value(metrics.NOTIFICATIONS, stage="dropped", reason="client_state_mismatch") == 1
    assert otel.value(metrics.WEBHOOK_ACK_DURATION) == 1
    events = metrics.get_metric_stats()["events"]  # the status page's window: the total and why
    assert events["notifications.dropped"]["total"] == 1
    assert events["notifications.dropped.client_state_mismatch"]["total"] == 1
    assert "notifications.accepted.None" not in events
    assert "queue.send" in otel.span_names()


def test_graph_outcome_groups_statuses() -> None:
    """Dashboards group Graph responses into a handful of outcomes."""
    assert [metrics.graph_outcome(s) for s in (200, 204, 304, 404, 429, 500, 503)] == [
        "ok",
        "ok",
        "ok",
        "4xx",
        "429",
        "5xx",
        "5xx",
    ]


def test_recording_without_install_loads_no_opentelemetry() -> None:
    """With no exporter configured, recording and spans are no-ops that never import opentelemetry."""
    code = (
        "import sys\n"
        "from shared import metrics\n"
        "metrics.record_cache('hit-l1'); metrics.record_graph_attempt('w', 'ok', 0.01)\n"
        "metrics.record_breaker_transition('b', 'open'); metrics.record_notifications('published', 2)\n"
        "with metrics.span('x'):\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_importing_the_app_loads_no_telemetry_sdk() -> None:
    """``import function_app`` imports neither OpenTelemetry nor the Azure Monitor exporter."""
    code = (
        "import sys, function_app\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_reset_forgets_every_measurement_and_uninstalls(otel: Recorded) -> None:
    """One call empties the window, the cache counts, the breaker gauge and the expiry copy, and
    turns OpenTelemetry back into no-ops: what the autouse fixture relies on between tests."""
    metrics.record_cache("hit-l1")
    metrics.record_graph_attempt("w", "429", 0.01)
    metrics.record_breaker_transition("b", "open")
    metrics.EXPIRY.update([metrics.Expiry("s1", "users", 4600.0)])
    metrics.reset()
    stats = metrics.get_metric_stats()
    assert (stats["distributions"], stats["events"]) == ({}, {})
    assert otel.value(metrics.CACHE_REQUESTS) == 0
    assert otel.points(metrics.BREAKER_STATE) == []
    assert metrics.EXPIRY.observe() == []
    metrics.record_graph_attempt("w", "ok", 0.01)
    with metrics.span("after-reset"):
        pass
    assert otel.value(metrics.GRAPH_CALLS, outcome="ok") == 0
    assert "after-reset" not in otel.span_names()
