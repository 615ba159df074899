"""The cache against real Table Storage (Azurite): sharing across instances, 900 KB values, group
invalidation, the cross-instance lease, the sweeper, and an unreachable table."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from devtools.azurite import connection_string, free_port
from shared.cache import CacheKey, CacheManager, CachePolicy, Freshness, TableTier
from shared.storage import Tables

pytestmark = pytest.mark.integration

POLICY = CachePolicy(
    freshness=Freshness(soft_ttl=60, hard_ttl=300, max_staleness=3600, negative_ttl=30),
    lease_wait=5.0,
    lease_poll_interval=0.02,
)


class Upstream:
    """Counts calls; returns ``value`` after ``delay`` seconds (long enough for the others to pile up)."""

    def __init__(self, value: Any, delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.value


@pytest.fixture(name="table_service")
async def _table_service(storage_connection_string: str) -> AsyncIterator[TableServiceClient]:
    service = TableServiceClient.from_connection_string(storage_connection_string, retry_total=1)
    async with service:
        yield service


@pytest.fixture(name="tables")
def _tables(table_service: TableServiceClient, unique_name: str) -> Tables:
    """This test's own tables on the session's Azurite."""
    return Tables(table_service, unique_name)


Factory = Callable[..., CacheManager]


@pytest.fixture(name="make_manager")
async def _make_manager(tables: Tables) -> AsyncIterator[Factory]:
    """Managers over the same table, each with its own L1: separate app instances."""
    built: list[CacheManager] = []

    def make(policy: CachePolicy = POLICY, clock: Callable[[], float] = time.time) -> CacheManager:
        manager = CacheManager.from_tables(tables, policy, clock=clock)
        built.append(manager)
        return manager

    yield make
    for manager in built:
        await manager.aclose()


async def test_second_instance_is_served_from_table_storage(make_manager: Factory) -> None:
    """A miss on one instance fills L2; another instance's first call is an L2 hit; one fetch in all."""
    key = CacheKey("users", "alice@contoso.com", group="user:alice")
    upstream = Upstream({"id": "alice", "displayName": "Alice"})
    first = await make_manager().get_or_set(key, upstream)
    second = await make_manager().get_or_set(key, upstream)
    assert (first.source, second.source, upstream.calls) == ("miss", "hit-l2", 1)
    assert second.value == upstream.value
    assert second.etag == first.etag


async def test_notification_data_is_cached_newest_version_first(make_manager: Factory) -> None:
    """The handlers' adapter over real Table Storage: after the mailbox's invalidation a message's data is
    served by another instance without a fetch; an older redelivery, concurrent with a newer one, never wins."""
    from shared.api.params import MESSAGE_RESOURCE_FIELDS
    from shared.directory import CacheInvalidationAdapter, message_key

    writer, reader = make_manager(), make_manager()
    adapter = CacheInvalidationAdapter(writer)

    def version(second: int) -> dict[str, Any]:
        data: dict[str, Any] = dict.fromkeys(MESSAGE_RESOURCE_FIELDS)
        data.update(id="m1", subject=f"v{second}", lastModifiedDateTime=f"2026-12-02T10:00:{second:02d}Z")
        return data

    guid = "0b5c5a43-3c6e-4d3f-9f3a-3a1f7f6a0c01"
    await adapter.invalidate_groups({f"messages:{guid}"})
    assert await adapter.update_message(guid, "m1", version(1), created=True)
    newest, _older = await asyncio.gather(
        adapter.update_message(guid, "m1", version(3), created=False),
        adapter.update_message(guid, "m1", version(2), created=True),
    )
    upstream = Upstream("graph")
    result = await reader.get_or_set(message_key(guid.upper(), "m1"), upstream)
    assert (result.value["subject"], result.source, upstream.calls) == ("v3", "hit-l2", 0)
    assert newest
    assert not await adapter.update_message(guid, "m1", version(2), created=False)  # a redelivery after it, too
    assert not await adapter.update_message(guid, "other", version(4), created=False)  # data of another message


@pytest.mark.parametrize(
    "value",
    [
        {"blob": base64.b64encode(os.urandom(675_000)).decode()},  # random: zlib saves only ~25%
        {"value": [{"id": str(i), "subject": "Quarterly report", "isRead": False} for i in range(16_000)]},
    ],
    ids=["random-900kb", "compressible-900kb"],
)
async def test_900_kb_value_round_trips_through_table_storage(make_manager: Factory, value: Any) -> None:
    """Compressed and split into binary properties, a 900 KB value comes back equal from another instance."""
    key = CacheKey("mail", "alice/page-1")
    await make_manager().get_or_set(key, Upstream(value))
    result = await make_manager().get_or_set(key, Upstream(None))
    assert result.source == "hit-l2"
    assert result.value == value


async def test_value_larger_than_an_entity_is_served_but_not_cached(make_manager: Factory) -> None:
    """2 MB of random text cannot fit one entity: the caller gets it, the table never sees it."""
    manager = make_manager()
    upstream = Upstream(base64.b64encode(os.urandom(1_500_000)).decode())
    key = CacheKey("mail", "huge")
    assert (await manager.get_or_set(key, upstream)).value == upstream.value
    assert (await make_manager().get_or_set(key, upstream)).source == "miss"
    assert manager.stats.refused_too_large == 1
    assert manager.stats.storage_errors == 0


async def test_group_invalidation_drops_exactly_that_group(make_manager: Factory) -> None:
    """After ``invalidate_group`` every entry of the group misses on a fresh instance; another group
    still hits."""
    writer = make_manager()
    alice = [CacheKey("mail", f"alice/page-{i}", group="mail:alice") for i in range(3)]
    bob = [CacheKey("mail", f"bob/page-{i}", group="mail:bob") for i in range(3)]
    upstream = Upstream(["message"])
    for key in alice + bob:
        await writer.get_or_set(key, upstream)
    await writer.invalidate_group("mail:alice")
    reader = make_manager()
    sources = [(await reader.get_or_set(key, upstream)).source for key in alice + bob]
    assert sources == ["miss"] * 3 + ["hit-l2"] * 3
    assert upstream.calls == 9


async def test_two_instances_with_50_concurrent_cold_gets_each_fetch_once(make_manager: Factory) -> None:
    """Single-flight within each instance and the Table lease across them: 100 calls, one fetch."""
    a, b = make_manager(), make_manager()
    key = CacheKey("users", "hot-user", group="user:hot")
    upstream = Upstream({"id": "hot"}, delay=0.2)
    results = await asyncio.gather(*(m.get_or_set(key, upstream) for _ in range(50) for m in (a, b)))
    assert upstream.calls == 1
    assert {r.value["id"] for r in results} == {"hot"}
    assert {r.source for r in results} == {"miss", "hit-l2"}


async def test_sweeper_deletes_expired_rows_and_keeps_fresh_ones(make_manager: Factory) -> None:
    """Rows past their ``ExpiresAt`` (values, negatives, tombstones) are deleted and counted; live ones stay."""
    now = [1_700_000_000.0]
    manager = make_manager(clock=lambda: now[0])
    short = Freshness(soft_ttl=1, hard_ttl=2, max_staleness=3)
    for i in range(5):
        await manager.get_or_set(CacheKey("users", f"short-{i}"), Upstream(i), freshness=short)
    await manager.invalidate(CacheKey("users", "short-0"))  # a tombstone, expiring after lease_duration
    for i in range(3):
        await manager.get_or_set(CacheKey("users", f"long-{i}"), Upstream(i))
    now[0] += POLICY.lease_duration + 1
    assert await manager.sweep_expired() == 5
    assert await manager.sweep_expired() == 0
    later = make_manager(clock=lambda: now[0])
    for i in range(3):
        assert (await later.get_or_set(CacheKey("users", f"long-{i}"), Upstream(None))).source == "hit-l2"


async def test_unreachable_table_storage_is_bypassed_and_counts_an_error(unique_name: str) -> None:
    """Nothing listens on the table port: the call is answered from upstream (``bypass``: the value is not
    shared with other instances) and the error is counted."""
    port = free_port()
    dead = TableServiceClient.from_connection_string(connection_string("127.0.0.1", port, port, port), retry_total=0)
    async with dead:
        manager = CacheManager.from_tables(Tables(dead, unique_name), POLICY)
        upstream = Upstream({"id": "alice"})
        result = await manager.get_or_set(CacheKey("users", "alice", group="user:alice"), upstream)
        assert (result.source, result.value, upstream.calls) == ("bypass", {"id": "alice"}, 1)
        assert manager.stats.storage_errors >= 1


async def test_sweeper_spares_a_row_refreshed_between_scan_and_delete(tables: Tables) -> None:
    """Deletes are conditional on the scanned ETag: when one row changed meanwhile, the batch falls back
    to row-by-row deletes and that row survives."""
    tier = TableTier.from_tables(tables, clock=time.time, timeout=5.0)
    client = await tables.get("cache")
    for i in range(3):
        await client.upsert_entity({"PartitionKey": "users.00", "RowKey": f"v~{i}", "ExpiresAt": 1.0})
    scanned = [row async for row in client.query_entities("ExpiresAt lt @now", parameters={"now": 2.0})]
    await client.upsert_entity({"PartitionKey": "users.00", "RowKey": "v~1", "ExpiresAt": time.time() + 60})
    assert await tier._delete_batch(scanned) == 2
    assert [row["RowKey"] async for row in client.list_entities()] == ["v~1"]
