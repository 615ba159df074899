"""Counters a cache keeps for telemetry; ``snapshot()`` is what exporters read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class CacheStats:
    """Two kinds of counters.

    Per caller (each ``get_or_set`` call counts exactly one): ``hits_l1``, ``hits_l2``, ``stale``,
    ``misses``, ``bypassed`` (fetched upstream while Table Storage was unavailable, so not shared with
    other instances), ``negative_hits`` (a cached ``NotFoundError`` re-raised), ``failures`` (the call raised
    an upstream error that was not a cached one).

    Per operation: ``fetches`` (upstream calls), ``fetch_errors``, ``storage_errors`` (Table failures
    the cache degraded on, and unreadable rows), ``refused_too_large``, ``write_conflicts`` (a write lost
    to a concurrent writer or an invalidation), ``lease_waits`` (misses that waited for another
    instance's fetch), ``refreshes`` and ``refresh_errors`` (background revalidation).
    """

    hits_l1: int = 0
    hits_l2: int = 0
    stale: int = 0
    misses: int = 0
    bypassed: int = 0
    negative_hits: int = 0
    failures: int = 0
    fetches: int = 0
    fetch_errors: int = 0
    storage_errors: int = 0
    refused_too_large: int = 0
    write_conflicts: int = 0
    lease_waits: int = 0
    refreshes: int = 0
    refresh_errors: int = 0

    def count_answer(self, source: str) -> None:
        """One ``get_or_set`` call answered from ``source`` (a ``Source``; anything else is a miss)."""
        if source == "hit-l1":
            self.hits_l1 += 1
        elif source == "hit-l2":
            self.hits_l2 += 1
        elif source == "stale":
            self.stale += 1
        elif source == "bypass":
            self.bypassed += 1
        else:
            self.misses += 1

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, safe to hand to an exporter while the cache keeps counting."""
        return dataclasses.asdict(self)
