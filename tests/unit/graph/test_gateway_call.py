"""The order of ``GraphGateway.call``: the mailbox slot is taken before the breaker, so a local wait is never a
breaker outcome and never holds the half-open probe lease. Breakers on the in-memory store, no HTTP: ``send``
returns ready-made responses."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import pytest

from shared.errors import CircuitOpenError, ThrottledError
from shared.graph.gateway import MAIL, GraphGateway
from shared.resilience import BreakerPolicy, BreakerRegistry, MemoryBreakerStore, Outcome, RetryPolicy, State
from shared.resilience.breaker_policy import default_classifier
from shared.resilience.limits import KeyedLimiter

POLICY = BreakerPolicy(
    consecutive_failures=5, open_base_seconds=10.0, state_cache_seconds=0.0, flush_interval_seconds=0.0
)
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def gateway(breakers: BreakerRegistry, limiter: KeyedLimiter) -> GraphGateway:
    return GraphGateway(cast(Any, None), breakers, ONE_ATTEMPT, limiter)  # ``send`` never uses the client


async def ok() -> httpx.Response:
    return httpx.Response(200, json={"id": "m1"})


async def test_mailbox_slot_timeouts_never_reach_the_breaker() -> None:
    """One slow call holds the mailbox's only slot; fifteen callers give up waiting for it
    (``concurrency_limited``). The breaker never sees those errors, even with a classifier that would count
    every throttle, and stays closed for every mailbox."""
    seen: list[BaseException] = []

    def counts_every_throttle(error: BaseException | None) -> Outcome:
        if error is not None:
            seen.append(error)
        return Outcome.FAILURE if isinstance(error, ThrottledError) else default_classifier(error)

    clock = Clock()
    breakers = BreakerRegistry(MemoryBreakerStore(clock), POLICY, classify=counts_every_throttle, local_clock=clock)
    graph = gateway(breakers, KeyedLimiter(1, acquire_timeout=0.001, name="graph-mailbox"))
    release, started = asyncio.Event(), asyncio.Event()

    async def slow() -> httpx.Response:
        started.set()
        await release.wait()
        return await ok()

    holder = asyncio.create_task(graph.call(MAIL, slow, mailbox="slow@contoso.com"))
    await started.wait()
    for _ in range(3 * POLICY.consecutive_failures):
        with pytest.raises(ThrottledError) as raised:
            await graph.call(MAIL, ok, mailbox="SLOW@contoso.com")
        assert raised.value.code == "concurrency_limited"
    assert seen == []
    assert (await breakers.get(MAIL).snapshot()).state is State.CLOSED
    assert await graph.call(MAIL, ok, mailbox="other@contoso.com") == {"id": "m1"}
    release.set()
    assert await holder == {"id": "m1"}


async def test_a_caller_waiting_for_a_mailbox_slot_does_not_hold_the_probe_lease() -> None:
    """Half-open, a call queued behind a busy mailbox has not taken the probe lease: another instance
    probes meanwhile and closes the breaker; the queued call then runs as a normal call."""
    clock = Clock()
    store = MemoryBreakerStore(clock)
    here = BreakerRegistry(store, POLICY, local_clock=clock)
    elsewhere = BreakerRegistry(store, POLICY, local_clock=clock).get(MAIL)

    async def throttled() -> None:
        raise ThrottledError("429", status=429)

    for _ in range(POLICY.consecutive_failures):
        with pytest.raises(ThrottledError):
            await elsewhere.call(throttled)
    with pytest.raises(CircuitOpenError):
        await elsewhere.call(ok)
    clock.now += POLICY.open_base_seconds
    limiter = KeyedLimiter(1)
    graph = gateway(here, limiter)
    busy, release = asyncio.Event(), asyncio.Event()

    async def hold_slot() -> None:
        async with limiter.slot("busy@contoso.com"):
            busy.set()
            await release.wait()

    holder = asyncio.create_task(hold_slot())
    await busy.wait()
    queued = asyncio.create_task(graph.call(MAIL, ok, mailbox="busy@contoso.com"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not queued.done()
    assert (await elsewhere.call(ok)).status_code == 200  # the probe, on the other instance
    assert (await elsewhere.snapshot()).state is State.CLOSED
    release.set()
    await holder
    assert await queued == {"id": "m1"}
