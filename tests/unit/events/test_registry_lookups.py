"""The webhook's clientState lookups stay bounded whatever an anonymous caller posts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import TransientError
from shared.secret import Secret
from shared.subscriptions.records import RegistryConfig, SubscriptionRecord, SubscriptionRegistry


class CountingTable:
    """Just enough of a TableClient: one known subscription; counts reads; optionally slow."""

    def __init__(self, record: SubscriptionRecord, delay: float = 0.0) -> None:
        self.entity = record.to_entity()
        self.reads = 0
        self.delay = delay

    async def get_entity(self, partition_key: str, row_key: str) -> dict[str, Any]:
        from azure.core.exceptions import ResourceNotFoundError

        self.reads += 1
        await asyncio.sleep(self.delay)
        if row_key == self.entity["RowKey"]:
            return self.entity
        raise ResourceNotFoundError("no such entity")


class OneTable:
    def __init__(self, table: CountingTable) -> None:
        self.table = table

    async def get(self, short_name: str) -> CountingTable:
        return self.table


RECORD = SubscriptionRecord(
    id="real-subscription",
    resource="users",
    change_types=("updated",),
    notification_url="https://app/api/notifications",
    client_state=Secret("s3cret"),
    expiration=datetime(2030, 1, 1, tzinfo=UTC),
    created_at=datetime(2030, 1, 1, tzinfo=UTC),
)


def _registry(table: CountingTable, **config: Any) -> SubscriptionRegistry:
    return SubscriptionRegistry(OneTable(table), RegistryConfig(**config))  # type: ignore[arg-type]


async def test_a_post_full_of_random_ids_costs_a_bounded_number_of_reads() -> None:
    """1,000 unknown subscription ids in one POST cost at most max_lookups_per_post table reads."""
    table = CountingTable(RECORD)
    registry = _registry(table, max_lookups_per_post=32)
    found = await registry.client_states({f"random-{i}" for i in range(1000)} | {RECORD.id})
    assert table.reads <= 32
    assert sum(1 for secret in found.values() if secret is None) >= 999


async def test_random_ids_never_evict_the_real_subscriptions_secret() -> None:
    """Filling the lookup cache with misses keeps the known secret cached (no table read for it after)."""
    table = CountingTable(RECORD)
    registry = _registry(table, max_cached=50, max_lookups_per_post=1000)
    assert (await registry.client_state(RECORD.id)) is not None
    for batch in range(5):
        await registry.client_states({f"r{batch}-{i}" for i in range(40)})
    reads = table.reads
    assert (await registry.client_state(RECORD.id)) is not None
    assert table.reads == reads


async def test_slow_storage_makes_the_lookup_fail_fast() -> None:
    """Lookups slower than lookup_timeout_seconds raise TransientError (the webhook answers 503 in time)."""
    registry = _registry(CountingTable(RECORD, delay=5.0), lookup_timeout_seconds=0.1)
    with pytest.raises(TransientError):
        await registry.client_states({RECORD.id})
