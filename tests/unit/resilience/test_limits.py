"""Keyed concurrency limits: N in flight per key, keys independent, memory released, bounded waiting."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import ThrottledError
from shared.resilience import KeyedLimiter
from tests.unit.ordering import settle, until


async def test_at_most_limit_calls_run_per_key_and_keys_are_independent() -> None:
    """With limit 4, eight callers of one mailbox run four at a time while another mailbox is not held up."""
    limiter = KeyedLimiter(4)
    peak: dict[str, int] = {"a": 0, "b": 0}
    release = asyncio.Event()

    async def work(key: str) -> None:
        async with limiter.slot(key):
            peak[key] = max(peak[key], limiter.in_flight(key))
            await release.wait()

    tasks = [asyncio.create_task(work("a")) for _ in range(8)] + [asyncio.create_task(work("b"))]
    await until(lambda: (limiter.in_flight("a"), limiter.in_flight("b")) == (4, 1), "a full and b admitted")
    await settle()  # the four queued callers of a had their turns and are still queued
    assert (limiter.in_flight("a"), limiter.in_flight("b")) == (4, 1)
    release.set()
    await asyncio.gather(*tasks)
    assert peak == {"a": 4, "b": 1}


async def test_idle_keys_are_forgotten() -> None:
    """After 1,000 distinct keys were used one after another, the limiter holds no state."""
    limiter = KeyedLimiter(2)
    for n in range(1000):
        async with limiter.slot(f"mailbox-{n}"):
            assert len(limiter) == 1
    assert len(limiter) == 0


async def test_acquire_timeout_raises_a_transient_throttled_error() -> None:
    """A caller that waits longer than ``acquire_timeout`` gets ThrottledError and leaves no trace."""
    limiter = KeyedLimiter(1, acquire_timeout=0.05, name="graph-mailbox")
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with limiter.slot("a"):
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    with pytest.raises(ThrottledError) as raised:
        async with limiter.slot("a"):
            pass
    assert (raised.value.code, raised.value.service) == ("concurrency_limited", "graph-mailbox")
    release.set()
    await holder
    assert len(limiter) == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    """A waiter cancelled while queued neither takes a slot nor keeps the key alive."""
    limiter = KeyedLimiter(1)
    release = asyncio.Event()

    holding, queued = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with limiter.slot("a"):
            holding.set()
            await release.wait()

    async def wait_for_slot() -> None:
        queued.set()  # slot() runs without suspending until it queues on the taken slot
        async with limiter.slot("a"):
            pytest.fail("the slot is held: a waiter must not get it")

    holder = asyncio.create_task(hold())
    await holding.wait()
    waiter = asyncio.create_task(wait_for_slot())
    await queued.wait()
    assert len(limiter) == 1
    assert limiter.in_flight("a") == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert len(limiter) == 0
    async with limiter.slot("a"):
        assert limiter.in_flight("a") == 1


def test_limit_must_be_positive() -> None:
    """A limit of 0 would block forever: rejected."""
    with pytest.raises(ValueError, match="limit"):
        KeyedLimiter(0)
