"""Cache managers over one in-memory table, a clock the test moves, and a scriptable upstream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from shared.cache import CacheListener, CacheManager, CachePolicy, Freshness, SilentListener, TableTier
from tests.unit.cache.fakes import FakeClock, FakeTableClient

FRESHNESS = Freshness(soft_ttl=10.0, hard_ttl=100.0, max_staleness=1000.0, negative_ttl=5.0)
POLICY = CachePolicy(
    l1_ttl=1.0,
    generation_ttl=1.0,
    freshness=FRESHNESS,
    lease_duration=10.0,
    lease_wait=0.05,
    lease_poll_interval=0.001,
    storage_cooldown=5.0,
)


class Upstream:
    """A fetch that counts its calls and returns ``value`` or raises ``error``; ``gate`` holds it."""

    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.error: BaseException | None = None
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.value


class CountingLoads(SilentListener):
    """Counts the callers that reached the single-flight load (``loading`` is entered just before it)."""

    def __init__(self) -> None:
        self.callers = 0

    def loading(self, namespace: str) -> AbstractContextManager[Any]:
        self.callers += 1
        return contextlib.nullcontext()


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="table")
def _table() -> FakeTableClient:
    return FakeTableClient()


ManagerFactory = Callable[..., CacheManager]


@pytest.fixture(name="make_manager")
async def _make_manager(clock: FakeClock, table: FakeTableClient) -> AsyncIterator[ManagerFactory]:
    """Builds managers that share the one table (like instances of the app) but each have their own L1."""
    built: list[CacheManager] = []

    async def get_client() -> Any:
        return table

    def make(policy: CachePolicy = POLICY, listener: CacheListener | None = None) -> CacheManager:
        manager = CacheManager(TableTier(get_client, clock=clock, timeout=1.0), policy, clock=clock, listener=listener)
        built.append(manager)
        return manager

    yield make
    for manager in built:
        await manager.aclose()


@pytest.fixture(name="manager")
def _manager(make_manager: ManagerFactory) -> CacheManager:
    return make_manager()


@pytest.fixture(name="upstream")
def _upstream() -> Upstream:
    return Upstream({"id": "alice", "displayName": "Alice"})
