"""``SingleFlight``: concurrent callers for one key share one running task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

R = TypeVar("R")


class SingleFlight(Generic[R]):
    """One running task per key; later callers await the same task instead of starting another.

    Callers await it through ``shield``: a caller that is cancelled (client went away) does not cancel
    the load others wait for.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[R]] = {}

    async def run(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, R]]) -> R:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.create_task(start())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[R]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved here too, so a load whose callers all left does not warn
