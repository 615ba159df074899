"""The service registry: lazy per-process singletons, swappable factories, clean shutdown."""

from __future__ import annotations

import asyncio

import pytest

from shared.container import Registry, Service
from tests.unit.ordering import until


class Client:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def close(self) -> None:
        self.log.append(f"closed {self.name}")


async def _close(client: Client) -> None:
    await client.close()


async def test_async_service_is_built_once_under_concurrency() -> None:
    """100 concurrent first uses build the service exactly once."""
    builds: list[int] = []
    built = asyncio.Event()
    callers: list[int] = []

    async def build() -> Client:
        builds.append(1)
        await built.wait()
        return Client("a", [])

    async def use() -> Client:
        callers.append(1)
        return await registry.get(service)

    service: Service[Client] = Service("a", build)
    registry = Registry()
    uses = [asyncio.create_task(use()) for _ in range(100)]
    await until(lambda: len(callers) == 100 and len(builds) >= 1, "every caller asking while the build runs")
    built.set()
    results = await asyncio.gather(*uses)
    assert len(builds) == 1
    assert all(r is results[0] for r in results)


async def test_override_swaps_the_factory_without_patching() -> None:
    """A test replaces a factory through the registry and gets its fake."""
    log: list[str] = []
    service = Service("a", lambda: Client("real", log), _close)
    registry = Registry()
    registry.override(service, lambda: Client("fake", log))
    assert (await registry.get(service)).name == "fake"
    await registry.reset()
    assert (await registry.get(service)).name == "real"


async def test_aclose_closes_newest_first_and_forgets() -> None:
    """Closing runs each service's closer in reverse build order; the next use builds anew."""
    log: list[str] = []
    first = Service("first", lambda: Client("first", log), _close)
    second = Service("second", lambda: Client("second", log), _close)
    registry = Registry()
    one = await registry.get(first)
    await registry.get(second)
    await registry.aclose()
    assert log == ["closed second", "closed first"]
    assert registry.peek(first) is None
    assert await registry.get(first) is not one


def test_sync_access_refuses_async_factories() -> None:
    """get_sync on an async factory is a clear TypeError, not an un-awaited coroutine."""

    async def build() -> Client:
        return Client("x", [])

    with pytest.raises(TypeError, match="async factory"):
        Registry().get_sync(Service("x", build))
