"""The cache reports each call's answer and each load to the listener it was built with (no metrics import)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from shared.cache import CacheKey, CacheManager, TableTier
from shared.errors import AccessDeniedError, NotFoundError
from tests.unit.cache.conftest import POLICY, Upstream
from tests.unit.cache.fakes import FakeClock, FakeTableClient


class Heard:
    """A ``CacheListener`` that writes down what it hears, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def answered(self, result: str) -> None:
        self.events.append(result)

    def loading(self, namespace: str) -> AbstractContextManager[Any]:
        return self._load(namespace)

    @contextlib.contextmanager
    def _load(self, namespace: str) -> Iterator[None]:
        self.events.append(f"load:{namespace}")
        try:
            yield
        finally:  # a span must end also when the load fails
            self.events.append(f"loaded:{namespace}")


async def test_listener_hears_every_answer_and_each_load() -> None:
    """Miss (a load), L1 hit (no load), cached NotFoundError, a failing fetch: one answer each, in order."""
    table, clock, heard = FakeTableClient(), FakeClock(), Heard()

    async def client() -> Any:  # a fake of the SDK's TableClient
        return table

    manager = CacheManager(TableTier(client, clock=clock, timeout=1.0), POLICY, clock=clock, listener=heard)
    await manager.get_or_set(CacheKey("users", "alice"), Upstream({"id": "alice"}))
    await manager.get_or_set(CacheKey("users", "alice"), Upstream({"id": "alice"}))
    gone, denied = Upstream(), Upstream()
    gone.error, denied.error = NotFoundError("gone"), AccessDeniedError("no")
    for _ in range(2):
        with pytest.raises(NotFoundError):
            await manager.get_or_set(CacheKey("users", "gone"), gone)
    with pytest.raises(AccessDeniedError):
        await manager.get_or_set(CacheKey("mail", "x"), denied)
    await manager.aclose()
    assert heard.events == [
        "load:users",
        "loaded:users",
        "miss",
        "hit-l1",
        "load:users",
        "loaded:users",
        "failure",  # the first NotFoundError came from the fetch: it is cached, and the call failed
        "negative-hit",
        "load:mail",
        "loaded:mail",
        "failure",
    ]
