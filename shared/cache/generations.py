"""Group generations: the token every entry is written under, replaced to invalidate a whole group."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection

from shared.cache.degradation import StorageDegradation
from shared.cache.memory import MemoryTier
from shared.cache.singleflight import SingleFlight
from shared.cache.table import TableTier
from shared.errors import StorageUnavailableError


class Generations:
    """Each group's current generation: from memory for ``ttl``, else from L2 (one read per group at a
    time). Without L2, the last one known, or a process-local one (entries then match only here)."""

    def __init__(
        self,
        l2: TableTier,
        storage: StorageDegradation,
        *,
        max_entries: int,
        ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self._l2 = l2
        self._storage = storage
        self._known: MemoryTier[str, str] = MemoryTier(max_entries=max_entries, ttl=ttl, clock=clock)
        self._local = "local-" + secrets.token_hex(8)
        self._reads: SingleFlight[str | None] = SingleFlight()

    async def current(self, group: str | None) -> str:
        """The generation entries of ``group`` must carry to be valid ("" for keys without a group)."""
        if group is None:
            return ""
        cached = self._known.get(group)
        if cached is not None:
            return cached
        generation = None
        if self._storage.usable():
            generation = await self._reads.run(group, lambda: self._read(group))
        if generation is None:
            generation = self._known.get(group, allow_expired=True) or self._local
        return generation

    async def replace(self, group: str) -> None:
        """A new generation: in effect here at once, then written to L2 (one upsert, so concurrent
        replacements never conflict). Raises ``StorageUnavailableError`` when L2 cannot record it."""
        generation = secrets.token_hex(8)
        self._known.put(group, generation)
        await self._l2.write_generation(group, generation)

    async def replace_many(self, groups: Collection[str]) -> None:
        """``replace`` for many groups, written together (a few transactions)."""
        generations = {group: secrets.token_hex(8) for group in groups}
        for group, generation in generations.items():
            self._known.put(group, generation)
        if generations:
            await self._l2.write_generations(generations)

    async def _read(self, group: str) -> str | None:
        before = self._known.get(group, allow_expired=True)
        try:
            generation = await self._l2.read_generation(group)
        except StorageUnavailableError as exc:
            self._storage.failed(exc)
            return None
        replaced_here = self._known.get(group, allow_expired=True)
        if replaced_here != before and replaced_here is not None:
            return replaced_here  # invalidated here while we read: what we read may predate it
        self._known.put(group, generation)
        return generation
