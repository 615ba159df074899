"""Fault rules as the SDK experiences them: throttling retried by its RetryHandler, persistent
outages surfacing as ODataError, dropped connections as transport errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from devtools.graphsim.client import SimControl

pytestmark = pytest.mark.integration


async def test_429_with_retry_after_is_retried_by_the_sdk(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """One 429 (Retry-After: 1): the SDK waits ≥ 1 s, retries, and the call succeeds."""
    graphsim.add_fault(r"^/users/[^/]+$", 429, retry_after=1, count=1)
    found = await graph_client.users.by_user_id(user["id"]).get()
    assert found.id == user["id"]
    attempts = graphsim.requests(route="GET /users/{id}")
    assert [a["status"] for a in attempts] == [429, 200]
    assert attempts[0]["fault"]
    assert attempts[1]["fault"] is None
    assert attempts[1]["time"] - attempts[0]["time"] >= 1.0


async def test_persistent_503_surfaces_as_odata_error(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """A 503 on every attempt ends as ODataError 503 after the SDK's retries (here: one)."""
    graphsim.add_fault(r"^/users/", 503, retry_after=1)
    config = RequestConfiguration(options=[RetryHandlerOption(delay=0, max_retries=1)])
    with pytest.raises(ODataError) as caught:
        await graph_client.users.by_user_id(user["id"]).get(config)
    assert caught.value.response_status_code == 503
    assert caught.value.error.code == "ServiceUnavailable"
    assert graphsim.count("GET /users/{id}", status=503) == 2


async def test_dropped_connection_is_a_transport_error(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """action=drop closes the socket without an answer: httpx raises a TransportError."""
    graphsim.add_fault(r"^/users/[^/]+$", action="drop", count=1)
    with pytest.raises(httpx.TransportError):
        await graph_client.users.by_user_id(user["id"]).get()
    assert (await graph_client.users.by_user_id(user["id"]).get()).id == user["id"]


async def test_fault_rules_respect_method_count_and_latency(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """A latency-only rule slows matching calls; a POST-only rule leaves GETs alone; counts wear out."""
    graphsim.add_fault(r"^/users$", 500, method="POST")
    graphsim.add_fault(r"^/users$", latency_ms=150, count=1)
    await graph_client.users.get()
    await graph_client.users.get()
    logged = graphsim.requests(route="GET /users")
    assert [r["status"] for r in logged] == [200, 200]
    assert logged[0]["duration_ms"] >= 150 > logged[1]["duration_ms"]
    assert [rule["method"] for rule in graphsim.faults()] == ["POST"]


async def test_base_latency_applies_to_graph_routes_only(graph_client: Any, graphsim: SimControl) -> None:
    """latency_ms delays Graph calls, not the control API."""
    import time

    graphsim.configure(latency_ms=200)
    started = time.perf_counter()
    await graph_client.users.get()
    graph_s = time.perf_counter() - started
    started = time.perf_counter()
    graphsim.users()
    control_s = time.perf_counter() - started
    assert graph_s >= 0.2 > control_s
