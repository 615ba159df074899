"""``KeyedTasks``: at most one background task per key, kept alive until done, cancellable at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any


class KeyedTasks:
    """Background work such as stale-while-revalidate refreshes. Tasks are held in a set until done, so
    none is garbage-collected mid-flight; a key is free again once its task has ended in any way."""

    def __init__(self) -> None:
        self._keys: set[Hashable] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> bool:
        """Run ``work()`` in the background unless a task for ``key`` is running; True if started."""
        if key in self._keys:
            return False
        self._keys.add(key)
        task = asyncio.create_task(work(), name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(key, done))
        return True

    def _finished(self, key: Hashable, task: asyncio.Task[None]) -> None:
        self._keys.discard(key)
        self._tasks.discard(task)

    async def drain(self) -> None:
        """Wait for every task started so far, and for those they start."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every running task and wait for them to end."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
