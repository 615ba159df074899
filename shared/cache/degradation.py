"""When the cache may use Table Storage: after a failure it skips L2 for ``storage_cooldown`` seconds."""

from __future__ import annotations

from collections.abc import Callable

from shared.cache.stats import CacheStats
from shared.errors import StorageUnavailableError
from shared.telemetry import get_logger

log = get_logger("cache")


class StorageDegradation:
    """Counts Table Storage failures and, after each, answers ``usable() is False`` for the cooldown:
    a storage outage then costs one timeout per cooldown, not one per call."""

    def __init__(self, cooldown: float, stats: CacheStats, clock: Callable[[], float]) -> None:
        self._cooldown = cooldown
        self._stats = stats
        self._clock = clock
        self._down_until = 0.0

    def usable(self) -> bool:
        return self._clock() >= self._down_until

    def failed(self, exc: StorageUnavailableError) -> None:
        self._stats.storage_errors += 1
        self._down_until = self._clock() + self._cooldown
        log.warning("cache degraded to memory and upstream for %.0f s: %s", self._cooldown, exc)
