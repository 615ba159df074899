"""One cached value as both tiers hold it: the canonical JSON bytes plus what freshness checks need."""

from __future__ import annotations

from dataclasses import dataclass

# Counted on top of the payload when the in-process tier budgets its bytes.
ENTRY_OVERHEAD_BYTES = 256


@dataclass(frozen=True, slots=True)
class Entry:
    """``payload`` is canonical JSON: the value, or for a negative entry the ``NotFoundError`` details.

    L1 keeps bytes, not the decoded object, so a caller mutating its result cannot corrupt the cache
    and every tier hands back the same types (what ``json.loads`` produces).
    """

    payload: bytes
    content_hash: str
    fetched_at: float
    expires_at: float
    generation: str
    negative: bool = False

    def age(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)

    @property
    def size(self) -> int:
        return len(self.payload) + ENTRY_OVERHEAD_BYTES
