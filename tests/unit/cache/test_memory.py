"""The in-process tier stays within its count and byte bounds and forgets items after its TTL."""

from __future__ import annotations

from shared.cache.memory import MemoryTier
from tests.unit.cache.fakes import FakeClock


def test_least_recently_used_item_is_evicted_beyond_max_entries() -> None:
    """With room for two, reading ``a`` keeps it and adding ``c`` evicts ``b``."""
    tier: MemoryTier[str, int] = MemoryTier(max_entries=2, ttl=10, clock=FakeClock())
    tier.put("a", 1)
    tier.put("b", 2)
    assert tier.get("a") == 1
    tier.put("c", 3)
    assert (tier.get("a"), tier.get("b"), tier.get("c")) == (1, None, 3)


def test_byte_budget_evicts_oldest_and_refuses_items_larger_than_itself() -> None:
    """Bytes are bounded as well as count, and one huge item cannot flush the whole tier."""
    tier: MemoryTier[str, bytes] = MemoryTier(max_entries=100, max_bytes=10, ttl=10, clock=FakeClock(), size_of=len)
    tier.put("a", b"1234")
    tier.put("b", b"1234")
    tier.put("c", b"1234")
    assert tier.get("a") is None
    assert tier.nbytes == 8
    tier.put("huge", b"x" * 11)
    assert tier.get("huge") is None
    assert len(tier) == 2


def test_items_expire_after_ttl_but_remain_visible_to_allow_expired() -> None:
    """An expired item is not served, yet stays available as a fallback until evicted."""
    clock = FakeClock()
    tier: MemoryTier[str, int] = MemoryTier(max_entries=10, ttl=1.0, clock=clock)
    tier.put("a", 1)
    clock.advance(0.99)
    assert tier.get("a") == 1
    clock.advance(0.01)
    assert tier.get("a") is None
    assert tier.get("a", allow_expired=True) == 1


def test_replacing_an_item_restarts_its_ttl_and_keeps_byte_count_exact() -> None:
    """``put`` over an existing key replaces it (size counted once) and trusts it for a full TTL again."""
    clock = FakeClock()
    tier: MemoryTier[str, bytes] = MemoryTier(max_entries=10, max_bytes=100, ttl=1.0, clock=clock, size_of=len)
    tier.put("a", b"12345")
    clock.advance(0.9)
    tier.put("a", b"123")
    clock.advance(0.9)
    assert tier.get("a") == b"123"
    assert tier.nbytes == 3
    tier.pop("a")
    assert tier.nbytes == 0
    assert len(tier) == 0
