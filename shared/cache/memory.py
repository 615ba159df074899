"""The in-process tier: a bounded LRU map whose items are trusted only for a short TTL.

Bounded by count and by bytes (one 900 KB value must not be able to pin hundreds of megabytes), and
short-lived because other instances cannot reach into this memory: the TTL is how long an invalidation
made elsewhere may go unnoticed here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MemoryTier(Generic[K, V]):
    """LRU by access; ``get`` ignores items older than ``ttl`` (``allow_expired`` still sees them)."""

    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        clock: Callable[[], float],
        max_bytes: int | None = None,
        size_of: Callable[[V], int] | None = None,
    ) -> None:
        self._items: OrderedDict[K, tuple[V, float, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._ttl = ttl
        self._clock = clock
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: K, *, allow_expired: bool = False) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, stored_at, _ = item
        if not allow_expired and self._clock() - stored_at >= self._ttl:
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store (refreshing the TTL); an item bigger than the whole byte budget is not kept."""
        size = self._size_of(value) if self._size_of is not None else 0
        self.pop(key)
        if self._ttl <= 0 or (self._max_bytes is not None and size > self._max_bytes):
            return
        self._items[key] = (value, self._clock(), size)
        self._bytes += size
        while len(self._items) > self._max_entries or (self._max_bytes is not None and self._bytes > self._max_bytes):
            _, (_, _, evicted) = self._items.popitem(last=False)
            self._bytes -= evicted

    def pop(self, key: K) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= item[2]
