"""The container: per-process singletons built lazily on first use, closed cleanly, swappable in tests.

A Functions worker process serves many invocations, so clients (Storage, Graph, credential) are created
once per process and reused; invocations themselves stay stateless because the *data* (cache entries,
breaker state, subscriptions) lives in Storage. Each ``Service`` is a typed key with a default factory;
``Registry.override(service, factory)`` swaps the factory (tests inject fakes that way, never by patching
module paths) and ``Registry.aclose()`` closes what was built, newest first.

This module is mechanics only: what the app's services are, and how they are built, is the wiring's
(``shared/wiring.py``). Feature code imports neither.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Service(Generic[T]):
    """A named per-process singleton: how to build it and, optionally, how to close it."""

    name: str
    factory: Callable[[], T | Awaitable[T]]
    close: Callable[[T], Awaitable[None]] | None = None


class Registry:
    """Holds the built instances of services; one per process (``registry``), fresh ones in tests."""

    def __init__(self) -> None:
        self._instances: dict[Service[Any], Any] = {}
        self._overrides: dict[Service[Any], Callable[[], Any]] = {}
        self._locks: dict[Service[Any], asyncio.Lock] = {}

    def override(self, service: Service[T], factory: Callable[[], T | Awaitable[T]]) -> None:
        """Use ``factory`` instead of the default one (drops an instance built before)."""
        self._overrides[service] = factory
        self._instances.pop(service, None)

    def get_sync(self, service: Service[T]) -> T:
        """The instance of a service whose factory is synchronous (e.g. settings)."""
        if service in self._instances:
            return cast(T, self._instances[service])
        value: Any = self._factory(service)()
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited: close it so it does not warn at garbage collection
            raise TypeError(f"service {service.name!r} has an async factory; use 'await registry.get(...)'")
        self._instances[service] = value
        return cast(T, value)

    async def get(self, service: Service[T]) -> T:
        """The instance, built once per process even when many invocations ask at the same time."""
        if service in self._instances:
            return cast(T, self._instances[service])
        lock = self._locks.setdefault(service, asyncio.Lock())
        async with lock:
            if service not in self._instances:
                value = self._factory(service)()
                if inspect.isawaitable(value):
                    value = await value
                self._instances[service] = value
        return cast(T, self._instances[service])

    def peek(self, service: Service[T]) -> T | None:
        """The instance if it was built already; never builds (health and status use this)."""
        return cast("T | None", self._instances.get(service))

    async def aclose(self) -> None:
        """Close every built instance, newest first, and forget them (overrides are kept)."""
        instances, self._instances = self._instances, {}
        self._locks.clear()
        for service, instance in reversed(list(instances.items())):
            if service.close is not None and service in instances:
                await service.close(instance)

    async def reset(self) -> None:
        """Close everything and drop overrides: the state of a fresh process."""
        await self.aclose()
        self._overrides.clear()

    def _factory(self, service: Service[T]) -> Callable[[], T | Awaitable[T]]:
        return cast("Callable[[], T | Awaitable[T]]", self._overrides.get(service, service.factory))
