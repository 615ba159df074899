"""``gather_bounded``: run one coroutine per item, at most ``limit`` at a time, results in item order.

Used wherever one request or message fans out into many calls (queue items, table lookups, renewals), so a
large batch never opens more storage or Graph calls at once than its owner allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def gather_bounded(items: Iterable[T], limit: int, fn: Callable[[T], Awaitable[R]]) -> list[R]:
    """``[await fn(item) for item in items]``, run concurrently with at most ``limit`` in flight.

    ``fn(item)`` is called only once a slot is free, so no work starts early. Like ``asyncio.gather``, the
    first exception propagates (the others keep running); callers that must try every item catch inside fn.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with gate:
            return await fn(item)

    return list(await asyncio.gather(*(one(item) for item in items)))
