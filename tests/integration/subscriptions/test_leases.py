"""Leases on Azurite: one holder at a time, expired leases are taken over, a stale holder cannot release."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from shared.storage import Tables
from shared.subscriptions.leases import LeaseStore


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_only_one_of_many_concurrent_acquirers_gets_the_lease(tables: Tables) -> None:
    """Insert-if-absent: ten workers racing for one name, one wins."""
    stores = [LeaseStore(tables) for _ in range(10)]

    leases = await asyncio.gather(*(s.acquire("renew:x", timedelta(minutes=1)) for s in stores))

    assert sum(lease is not None for lease in leases) == 1


async def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_release_it(tables: Tables) -> None:
    """A crashed holder blocks no longer than the duration; its late release leaves the new lease alone."""
    clock = FakeClock()
    store = LeaseStore(tables, clock)
    first = await store.acquire("a", timedelta(minutes=1))
    assert first is not None
    assert await store.acquire("a", timedelta(minutes=1)) is None

    clock.now += timedelta(minutes=2)
    second = await store.acquire("a", timedelta(minutes=1))
    assert second is not None
    await store.release(first)

    assert await store.acquire("a", timedelta(minutes=1)) is None
    await store.release(second)
    assert await store.acquire("a", timedelta(minutes=1)) is not None


async def test_hold_releases_on_exit_even_after_an_error(tables: Tables) -> None:
    """``hold`` gives the lease back when the work fails, so the next tick is not blocked."""
    store = LeaseStore(tables)

    async def failing_work() -> None:
        async with store.hold("b", timedelta(minutes=5)) as held:
            assert held
            raise ValueError("work failed")

    with pytest.raises(ValueError, match="work failed"):
        await failing_work()

    async with store.hold("b", timedelta(minutes=5)) as held_again:
        assert held_again
