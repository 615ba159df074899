"""Refresh leases: across instances one loads a missing key while the others wait for what it stores."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TypeVar

from shared.cache.degradation import StorageDegradation
from shared.cache.keys import CacheKey
from shared.cache.policy import CachePolicy
from shared.cache.stats import CacheStats
from shared.cache.table import StoredRow, TableTier
from shared.errors import StorageUnavailableError

A = TypeVar("A")


class Leases:
    """A key's refresh lease in L2, taken under this process's owner token for ``lease_duration``."""

    def __init__(self, l2: TableTier, storage: StorageDegradation, policy: CachePolicy, stats: CacheStats) -> None:
        self._l2 = l2
        self._storage = storage
        self._policy = policy
        self._stats = stats
        self._owner = secrets.token_hex(8)

    async def take(self, key: CacheKey) -> str | None:
        """The lease, or None while another holds it. Raises ``StorageUnavailableError``."""
        return await self._l2.acquire_lease(key, owner=self._owner, duration=self._policy.lease_duration)

    async def release(self, key: CacheKey, lease: str) -> None:
        try:
            await self._l2.release_lease(key, lease)
        except StorageUnavailableError as exc:
            self._storage.failed(exc)  # the lease expires on its own

    async def take_or_wait(
        self, key: CacheKey, answer_from: Callable[[StoredRow | None], A | None]
    ) -> tuple[str, StoredRow | None] | A | None:
        """Our lease and the row as it is now, or the answer (``answer_from`` a row another instance
        stored while we waited), or None when ``lease_wait`` ran out. Raises ``StorageUnavailableError``."""
        polls = round(self._policy.lease_wait / self._policy.lease_poll_interval)
        for attempt in range(polls + 1):
            lease = await self.take(key)
            row = await self._l2.read(key)  # after taking the lease: its previous holder may have just written
            answer = answer_from(row)
            if lease is not None:
                if answer is None:
                    return lease, row
                await self.release(key, lease)
            if answer is not None:
                return answer
            if attempt == 0:
                self._stats.lease_waits += 1
            if attempt < polls:
                await asyncio.sleep(self._policy.lease_poll_interval)
        return None
