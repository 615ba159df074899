"""Event-loop lag: how long a callback that is due waits before the process's event loop runs it.

Every HTTP answer, Storage reply and timeout of this process goes through one event loop, so when queue
processing keeps it busy, a webhook POST waits in line however fast Storage is. A sleeper that asks to wake
every ``interval`` seconds and notes how late it woke measures that wait directly; the admission gate for
background work (``shared.background``) steers by it and the status page reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

Listener = Callable[[float], None]


class LoopLagMonitor:
    """Samples the running loop's lag every ``interval`` seconds; ``latest`` is the last sample (seconds)."""

    def __init__(self, interval: float = 0.05, listeners: tuple[Listener, ...] = ()) -> None:
        self.interval = interval
        self.latest = 0.0
        self._listeners = listeners
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start sampling on the running loop, unless already sampling it (a new loop gets a new task)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._task = loop.create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.latest = max(0.0, time.perf_counter() - before - self.interval)
            for listener in self._listeners:
                listener(self.latest)
