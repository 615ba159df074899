"""The resilient Graph path against the simulator, with the breaker's state in Azurite tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from devtools.graphsim.client import SimControl
from shared import errors
from shared.graph.gateway import DIRECTORY, GraphGateway
from shared.wiring import BREAKERS, GRAPH, registry
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer

USER_ROUTE = "GET /users/{id}"
MakeGateway = Callable[..., Coroutine[Any, Any, GraphGateway]]


@pytest.fixture(name="make_gateway")
async def _make_gateway(
    app_env: dict[str, str], graphsim_server: GraphSimServer, graphsim: SimControl, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeGateway]:
    """The app's own gateway (services wiring) pointed at the simulator, with per-test setting overrides."""

    async def make(**overrides: str) -> GraphGateway:
        settings = {"GRAPH_BASE_URL": graphsim_server.base_url, "GRAPH_STATIC_TOKEN": GRAPHSIM_TOKEN, **overrides}
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        await registry.reset()
        return await registry.get(GRAPH)

    yield make
    await registry.reset()


async def test_retry_after_is_honoured_and_attempts_are_bounded(
    make_gateway: MakeGateway, graphsim: SimControl
) -> None:
    """Two 429s with Retry-After: 1 then success: three requests, spaced by at least a second each."""
    gateway = await make_gateway(RETRY_MAX_ATTEMPTS="3", RETRY_BUDGET_SECONDS="10")
    user = graphsim.users()[0]
    graphsim.add_fault(path=r"^/users/[^/]+$", status=429, retry_after=1, count=2)
    started = time.monotonic()
    assert (await gateway.get_user(user["id"]))["id"] == user["id"]
    assert time.monotonic() - started >= 2.0
    attempts = graphsim.requests(route=USER_ROUTE)
    assert [a["status"] for a in attempts] == [429, 429, 200]


async def test_a_429_storm_costs_at_most_max_attempts_per_call(make_gateway: MakeGateway, graphsim: SimControl) -> None:
    """Under a persistent 429 storm every logical call gives up after RETRY_MAX_ATTEMPTS requests (the SDK's
    own retries are off), re-raising the throttling error with Graph's Retry-After."""
    gateway = await make_gateway(RETRY_MAX_ATTEMPTS="3", RETRY_BUDGET_SECONDS="10", BREAKER_CONSECUTIVE_FAILURES="1000")
    users = graphsim.users()[:5]
    graphsim.add_fault(path=r"^/users/[^/]+$", status=429, retry_after=1)
    results = await asyncio.gather(*(gateway.get_user(u["id"]) for u in users), return_exceptions=True)
    assert all(isinstance(r, errors.ThrottledError) for r in results)
    assert all(r.retry_after == 1.0 for r in results if isinstance(r, errors.ThrottledError))
    assert graphsim.count(USER_ROUTE) == 3 * len(users)


async def test_retry_after_beyond_the_budget_fails_fast(make_gateway: MakeGateway, graphsim: SimControl) -> None:
    """A Retry-After longer than the call's budget is not slept on: one request, the hint is passed up."""
    gateway = await make_gateway(RETRY_BUDGET_SECONDS="2")
    graphsim.add_fault(path=r"^/users/[^/]+$", status=429, retry_after=120)
    started = time.monotonic()
    with pytest.raises(errors.ThrottledError) as caught:
        await gateway.get_user(graphsim.users()[0]["id"])
    assert time.monotonic() - started < 1.5
    assert caught.value.retry_after == 120.0
    assert graphsim.count(USER_ROUTE) == 1


async def test_outage_opens_the_breaker_then_calls_fail_fast_and_it_recovers(
    make_gateway: MakeGateway, graphsim: SimControl
) -> None:
    """A 503 outage opens the directory breaker; calls then fail without reaching Graph; after the open
    period one probe succeeds and the breaker closes."""
    gateway = await make_gateway(
        RETRY_MAX_ATTEMPTS="1", BREAKER_CONSECUTIVE_FAILURES="3", BREAKER_OPEN_SECONDS="1", BREAKER_MAX_OPEN_SECONDS="5"
    )
    user = graphsim.users()[0]
    fault = graphsim.add_fault(path=r"^/users", status=503)
    for _ in range(3):
        with pytest.raises(errors.UnavailableError):
            await gateway.get_user(user["id"])
    reached = graphsim.count(USER_ROUTE)
    with pytest.raises(errors.CircuitOpenError) as caught:
        await gateway.get_user(user["id"])
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0
    assert graphsim.count(USER_ROUTE) == reached

    graphsim.remove_fault(fault)
    await asyncio.sleep(1.2)
    assert (await gateway.get_user(user["id"]))["id"] == user["id"]
    snapshot = await (await registry.get(BREAKERS)).get(DIRECTORY).snapshot()
    assert snapshot.state == "closed"


async def test_not_found_does_not_count_against_the_breaker(make_gateway: MakeGateway, graphsim: SimControl) -> None:
    """Many 404s are answers, not failures: the breaker stays closed."""
    gateway = await make_gateway(BREAKER_CONSECUTIVE_FAILURES="2")
    for _ in range(5):
        with pytest.raises(errors.NotFoundError):
            await gateway.get_user("00000000-0000-0000-0000-000000000009")
    snapshot = await (await registry.get(BREAKERS)).get(DIRECTORY).snapshot()
    assert snapshot.state == "closed"


async def test_dropped_connections_and_garbage_are_transient(make_gateway: MakeGateway, graphsim: SimControl) -> None:
    """A dropped connection surfaces as UnavailableError (retried, then raised), never a raw httpx error."""
    gateway = await make_gateway(RETRY_MAX_ATTEMPTS="2", RETRY_BUDGET_SECONDS="5")
    graphsim.add_fault(path=r"^/users/[^/]+$", action="drop")
    with pytest.raises(errors.UnavailableError):
        await gateway.get_user(graphsim.users()[0]["id"])
    assert graphsim.count(USER_ROUTE) == 2


@pytest.mark.parametrize("paging", ["skip", "skiptoken"])
async def test_message_pages_follow_the_next_link_query_whatever_it_carries(
    make_gateway: MakeGateway, graphsim: SimControl, paging: str
) -> None:
    """``list_messages`` hands back the nextLink's query and follows it (through ``call``, under the mail
    workload) until Graph stops sending one: every one of 40 messages once, with $skip or $skiptoken."""
    graphsim.reset(messages_per_user=40)
    graphsim.configure(message_paging=paging)
    gateway = await make_gateway()
    mailbox = graphsim.users()[0]["id"]
    seen: list[str] = []
    items, continuation = await gateway.list_messages(mailbox, top=5, select=["id"])
    seen += [item["id"] for item in items]
    while continuation is not None:
        assert ("%24skiptoken=" in continuation) == (paging == "skiptoken")
        items, continuation = await gateway.list_messages(mailbox, top=5, select=["id"], continuation=continuation)
        seen += [item["id"] for item in items]
    assert sorted(seen) == sorted(m["id"] for m in graphsim.messages(mailbox))
    assert len(seen) == 40
    assert graphsim.count("GET /users/{user}/messages") == 8
