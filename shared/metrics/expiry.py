"""The ``subscription.expires_in`` gauge: seconds to each subscription's expiry, from a refreshed copy."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Expiry:
    subscription_id: str
    resource: str
    expires_at: float  # epoch seconds


ExpiryLoader = Callable[[], Awaitable[Iterable[Expiry]]]


class ExpiryGauge:
    """Seconds until each subscription expires, from a copy of the registry refreshed at most every
    ``refresh_seconds``. The gauge's callback runs on the exporter's thread and cannot await a table read,
    so it computes from the copy and, when the copy is old, schedules a refresh on the app's event loop."""

    _expiries: tuple[Expiry, ...]
    _loader: ExpiryLoader | None
    _loop: asyncio.AbstractEventLoop | None

    def __init__(self, refresh_seconds: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self.clear()

    def watch(self, loader: ExpiryLoader, loop: asyncio.AbstractEventLoop) -> None:
        """Refresh the copy through ``loader`` on ``loop`` when it is older than ``refresh_seconds``."""
        self._loader, self._loop = loader, loop

    def clear(self) -> None:
        """Forget the copy and the loader (tests start from a gauge that watches nothing)."""
        self._expiries, self._loaded_at = (), -math.inf
        self._loader, self._loop, self._refreshing = None, None, False

    def update(self, expiries: Iterable[Expiry]) -> None:
        self._expiries = tuple(expiries)
        self._loaded_at = self._clock()

    async def refresh(self) -> None:
        """Read the registry now (the loader's failures keep the previous copy)."""
        if self._loader is None or self._refreshing:
            return
        self._refreshing = True
        try:
            self.update(await self._loader())
        except Exception:  # a storage hiccup must not break metric collection; the next cycle retries
            self._loaded_at = self._clock()
        finally:
            self._refreshing = False

    def observe(self) -> list[tuple[float, dict[str, str]]]:
        """(seconds to expiry, attributes) per subscription; schedules a refresh when the copy is old."""
        if self._clock() - self._loaded_at >= self.refresh_seconds and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process is shutting down
                asyncio.run_coroutine_threadsafe(self.refresh(), self._loop)
        now = self._clock()
        return [
            (e.expires_at - now, {"subscription": e.subscription_id, "resource": e.resource}) for e in self._expiries
        ]
