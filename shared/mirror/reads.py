"""The API's view of the mirror: a user by guid or UPN, when the mirror is in sync.

In sync means a round completed within ``max_staleness`` seconds (read from the state row, kept for a
second per process). Out of sync, or a user the mirror does not know: ``None``, and the caller uses the
cache path (a user created since the last round is still found there). A deleted user answers 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.cache import CacheResult
from shared.errors import NotFoundError
from shared.mirror.store import MirrorStore
from shared.subscriptions.clock import Clock, utcnow


class MirrorReader:
    """``find(user_id, is_guid)`` → the user's shape (``X-Cache: mirror``) or None."""

    def __init__(
        self,
        store: MirrorStore,
        *,
        max_staleness: float,
        state_ttl: float = 1.0,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_staleness = max_staleness
        self._state_ttl = state_ttl
        self._clock = clock
        self._monotonic = monotonic
        self._completed: tuple[float, datetime | None] | None = None

    async def completed_at(self) -> datetime | None:
        """When the last round completed (cached ``state_ttl`` seconds)."""
        now = self._monotonic()
        if self._completed is None or now - self._completed[0] > self._state_ttl:
            value = (await self._store.state()).get("CompletedAt")
            self._completed = (now, value if isinstance(value, datetime) else None)
        return self._completed[1]

    async def find(self, user_id: str, *, is_guid: bool) -> CacheResult[dict[str, Any]] | None:
        completed = await self.completed_at()
        if completed is None:
            return None
        age = max(0.0, (self._clock() - completed).total_seconds())
        if age > self._max_staleness:
            return None
        guid = user_id.lower() if is_guid else await self._store.alias(user_id)
        if guid is None:
            return None
        row = await self._store.user(guid)
        if row is None:
            return None
        if row.deleted:
            raise NotFoundError("user not found")
        return CacheResult(row.user, "mirror", age, row.version)
