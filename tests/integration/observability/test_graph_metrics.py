"""Graph outcomes, retries, breaker trips and spans, measured on the real gateway against the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devtools.graphsim.client import SimControl
from shared import metrics
from shared.errors import CircuitOpenError, UnavailableError
from shared.graph.client import build_graph_client, build_http_client
from shared.graph.credentials import StaticTokenCredential
from shared.graph.gateway import DIRECTORY, GraphGateway
from shared.metrics.breakers import BreakerMetrics
from shared.resilience import BreakerPolicy, BreakerRegistry, MemoryBreakerStore
from shared.resilience.limits import KeyedLimiter
from shared.resilience.retry import RetryPolicy
from shared.settings import Settings
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer
from tests.unit.observability.otel import Recorded

pytestmark = pytest.mark.integration


@pytest.fixture(name="gateway")
async def _gateway(graphsim_server: GraphSimServer, graphsim: SimControl) -> AsyncIterator[GraphGateway]:
    """The app's gateway on the simulator: two attempts per call, a breaker that opens after two failures."""
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "GRAPH_BASE_URL": graphsim_server.base_url,
            "GRAPH_AUTH_MODE": "static_token",
            "GRAPH_STATIC_TOKEN": GRAPHSIM_TOKEN,
        }
    )
    http_client = build_http_client(settings)
    client = build_graph_client(settings, StaticTokenCredential(GRAPHSIM_TOKEN), http_client)
    policy = BreakerPolicy(consecutive_failures=2, state_cache_seconds=0, flush_interval_seconds=0)
    breakers = BreakerRegistry(MemoryBreakerStore(), policy, listeners=[BreakerMetrics()])
    retry = RetryPolicy(max_attempts=2, budget_seconds=5.0, max_retry_after_seconds=0.2, backoff_base_seconds=0.01)
    yield GraphGateway(client, breakers, retry, KeyedLimiter(4))
    await http_client.aclose()


async def test_throttled_call_counts_a_429_a_retry_and_the_success(
    otel: Recorded, gateway: GraphGateway, graphsim: SimControl
) -> None:
    """Graph answers 429 once (Retry-After 0): the attempt counts as ``429``, the retry as reason 429, the
    second attempt as ``ok``; the logical call is one ``graph.call`` span."""
    user = graphsim.users()[0]
    graphsim.add_fault(path=r"^/users", status=429, retry_after=0, count=1)
    assert (await gateway.get_user(user["id"]))["id"] == user["id"]
    assert otel.value(metrics.GRAPH_CALLS, workload=DIRECTORY, outcome="429") == 1
    assert otel.value(metrics.GRAPH_CALLS, workload=DIRECTORY, outcome="ok") == 1
    assert otel.value(metrics.GRAPH_RETRIES, workload=DIRECTORY, reason="429") == 1
    assert otel.value(metrics.GRAPH_CALL_DURATION, workload=DIRECTORY) == 2
    assert otel.span_names().count("graph.call") == 1


async def test_breaker_trip_through_simulator_faults(
    otel: Recorded, gateway: GraphGateway, graphsim: SimControl
) -> None:
    """Two 503s trip the breaker (one ``open`` transition); the next call is refused as ``breaker_rejected``."""
    user = graphsim.users()[0]
    graphsim.add_fault(path=r"^/users", status=503)
    with pytest.raises((UnavailableError, CircuitOpenError)):
        await gateway.get_user(user["id"])
    with pytest.raises(CircuitOpenError):
        await gateway.get_user(user["id"])
    assert otel.value(metrics.GRAPH_CALLS, workload=DIRECTORY, outcome="5xx") == 2
    assert otel.value(metrics.GRAPH_CALLS, workload=DIRECTORY, outcome="breaker_rejected") >= 1
    assert otel.value(metrics.BREAKER_TRANSITIONS, breaker=DIRECTORY, state="open") == 1
    assert otel.value(metrics.BREAKER_STATE, breaker=DIRECTORY) == metrics.BREAKER_STATE_VALUES["open"]
