"""At most N calls in flight per key inside this process (e.g. Graph's 4 concurrent requests per mailbox).

Excess callers queue in arrival order. Keys come from request data (a mailbox id), so a key's state exists
only while someone holds or waits for one of its slots: memory is bounded by concurrency, not by the
number of distinct keys ever seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shared.errors import ThrottledError


class ConcurrencyLimitedError(ThrottledError):
    """A caller waited too long for a local slot: our own refusal, so never a dependency's failure."""


@dataclass
class _Slots:
    semaphore: asyncio.Semaphore
    users: int = 0  # holders plus waiters; the entry is dropped when this returns to 0
    held: int = 0


class KeyedLimiter:
    """``async with limiter.slot(key):`` admits at most ``limit`` concurrent holders per key.

    With ``acquire_timeout`` (seconds), a caller that waits longer gets a ``ConcurrencyLimitedError`` (a
    transient ``ThrottledError``, so the retry policy may try again later) instead of queueing without
    bound. Take the slot outside a circuit breaker's ``call``: the wait is local and says nothing about the
    dependency (the default classifier ignores this error, too).
    """

    def __init__(self, limit: int, *, acquire_timeout: float | None = None, name: str = "concurrency") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if acquire_timeout is not None and acquire_timeout < 0:
            raise ValueError("acquire_timeout must be >= 0")
        self.limit = limit
        self.acquire_timeout = acquire_timeout
        self.name = name
        self._slots: dict[str, _Slots] = {}

    def __len__(self) -> int:
        """Number of keys currently tracked (held or waited for)."""
        return len(self._slots)

    def in_flight(self, key: str) -> int:
        """How many callers hold a slot of ``key`` right now."""
        slots = self._slots.get(key)
        return 0 if slots is None else slots.held

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _Slots(asyncio.Semaphore(self.limit))
        slots.users += 1
        try:
            try:
                async with asyncio.timeout(self.acquire_timeout):
                    await slots.semaphore.acquire()
            except TimeoutError:
                raise ConcurrencyLimitedError(
                    f"more than {self.limit} concurrent calls for one key waited over {self.acquire_timeout}s",
                    code="concurrency_limited",
                    service=self.name,
                ) from None
            slots.held += 1
            try:
                yield
            finally:
                slots.held -= 1
                slots.semaphore.release()
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._slots[key]
