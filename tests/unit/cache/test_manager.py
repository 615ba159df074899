"""get_or_set over an in-memory table: tiers, single-flight, SWR, stale-on-error, negatives, leases,
invalidation, degradation and stats. The clock is fake; concurrent steps are ordered by events and by
waiting for conditions, never by sleeping (the lease waits poll for real, a few milliseconds)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os

import pytest

from shared.cache import CacheKey, CacheManager, CachePolicy
from shared.errors import (
    AccessDeniedError,
    CircuitOpenError,
    NotFoundError,
    ThrottledError,
    UnavailableError,
)
from tests.unit.cache.conftest import POLICY, CountingLoads, ManagerFactory, Upstream
from tests.unit.cache.fakes import FakeClock, FakeTableClient
from tests.unit.ordering import until

KEY = CacheKey("users", "alice", group="user:alice")


# --- tiers ------------------------------------------------------------------------------------------


async def test_miss_then_l1_hit_then_l2_hit_after_l1_ttl(manager: CacheManager, clock: FakeClock) -> None:
    """The first call fetches; the next is served from memory; after ``l1_ttl`` from the table, no fetch."""
    upstream = Upstream({"id": "alice"})
    first = await manager.get_or_set(KEY, upstream)
    second = await manager.get_or_set(KEY, upstream)
    clock.advance(POLICY.l1_ttl)
    third = await manager.get_or_set(KEY, upstream)
    assert [r.source for r in (first, second, third)] == ["miss", "hit-l1", "hit-l2"]
    assert upstream.calls == 1
    assert third.value == {"id": "alice"}
    assert third.age == pytest.approx(POLICY.l1_ttl)


async def test_another_instance_is_served_from_the_table(make_manager: ManagerFactory) -> None:
    """A second manager (its own L1) gets the value from L2 with the same content hash/ETag."""
    upstream = Upstream({"b": 1, "a": 2})
    first = await make_manager().get_or_set(KEY, upstream)
    second = await make_manager().get_or_set(KEY, upstream)
    assert (first.source, second.source, upstream.calls) == ("miss", "hit-l2", 1)
    assert first.etag == second.etag == f'"{first.content_hash}"'


async def test_results_are_independent_copies(manager: CacheManager) -> None:
    """Mutating a returned value cannot change what the cache serves next."""
    upstream = Upstream({"tags": ["a"]})
    (await manager.get_or_set(KEY, upstream)).value["tags"].append("mutated")
    assert (await manager.get_or_set(KEY, upstream)).value == {"tags": ["a"]}


async def test_every_source_returns_json_types(manager: CacheManager) -> None:
    """A miss returns what a hit would (tuples become lists, int keys strings), so types never depend
    on the source."""
    upstream = Upstream({1: ("a", "b")})
    miss = await manager.get_or_set(KEY, upstream)
    hit = await manager.get_or_set(KEY, upstream)
    assert miss.value == hit.value == {"1": ["a", "b"]}


async def test_hostile_keys_are_cached_under_valid_table_keys(manager: CacheManager, table: FakeTableClient) -> None:
    """Keys with ``/ \\ # ?``, control characters and 10 KB of text are stored (the fake table checks
    Table Storage's key rules on every write) and found again."""
    for text in ["a/b\\c#d?e", "\x00\x1f\x7f\n", "é" * 10_000, "h-" + "0" * 64]:
        key = CacheKey("users", text, group=text)
        upstream = Upstream(text)
        await manager.get_or_set(key, upstream)
        assert (await manager.get_or_set(key, upstream)).value == text
        assert upstream.calls == 1


# --- single-flight and background refresh ------------------------------------------------------------


async def test_concurrent_misses_in_one_process_share_one_fetch(make_manager: ManagerFactory) -> None:
    """100 concurrent cold calls → exactly one upstream call; all get its value."""
    loads = CountingLoads()
    manager = make_manager(listener=loads)
    upstream = Upstream({"id": "alice"})
    upstream.gate = asyncio.Event()
    calls = [asyncio.create_task(manager.get_or_set(KEY, upstream)) for _ in range(100)]
    await until(lambda: loads.callers == 100 and upstream.calls >= 1, "every caller waiting on a started fetch")
    upstream.gate.set()
    results = await asyncio.gather(*calls)
    assert upstream.calls == 1
    assert {r.content_hash for r in results} == {results[0].content_hash}
    assert manager.stats.snapshot()["misses"] == 100


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(make_manager: ManagerFactory) -> None:
    """When the first caller goes away, callers that joined its load still get the value."""
    loads = CountingLoads()
    manager = make_manager(listener=loads)
    upstream = Upstream("v")
    upstream.gate = asyncio.Event()
    first = asyncio.create_task(manager.get_or_set(KEY, upstream))
    second = asyncio.create_task(manager.get_or_set(KEY, upstream))
    await until(lambda: loads.callers == 2 and upstream.calls == 1, "both callers waiting on the started fetch")
    first.cancel()
    upstream.gate.set()
    assert (await second).value == "v"
    assert upstream.calls == 1


async def test_past_soft_ttl_serves_stale_and_refreshes_once_in_background(
    manager: CacheManager, clock: FakeClock
) -> None:
    """Between soft and hard TTL callers get the old value at once, marked ``stale``; one refresh runs."""
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    clock.advance(20)
    upstream.value = "v2"
    upstream.gate = asyncio.Event()
    stale = await asyncio.gather(*(manager.get_or_set(KEY, upstream) for _ in range(20)))
    assert {(r.source, r.value) for r in stale} == {("stale", "v1")}
    assert stale[0].age == pytest.approx(20)
    upstream.gate.set()
    await manager.drain()
    assert upstream.calls == 2
    fresh = await manager.get_or_set(KEY, upstream)
    assert (fresh.source, fresh.value, fresh.age) == ("hit-l1", "v2", 0.0)
    assert manager.stats.refreshes == 1


async def test_stale_value_in_l1_is_revalidated_in_background(make_manager: ManagerFactory, clock: FakeClock) -> None:
    """SWR also applies to the memory tier (here trusted for longer than the soft TTL)."""
    manager = make_manager(CachePolicy(l1_ttl=60, freshness=POLICY.freshness))
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    clock.advance(20)
    upstream.value = "v2"
    assert (await manager.get_or_set(KEY, upstream)).source == "stale"
    await manager.drain()
    assert (await manager.get_or_set(KEY, upstream)).value == "v2"


async def test_background_refresh_skips_fetch_when_another_instance_refreshed(
    make_manager: ManagerFactory, clock: FakeClock
) -> None:
    """A refresh first re-reads the table: if another instance stored a fresh value, no fetch."""
    a, b = make_manager(CachePolicy(l1_ttl=60, freshness=POLICY.freshness)), make_manager()
    upstream = Upstream("v1")
    await a.get_or_set(KEY, upstream)
    clock.advance(20)
    await b.invalidate(KEY)  # makes b's next call a real fetch that stores a fresh value
    upstream.value = "v2"
    await b.get_or_set(KEY, upstream)
    assert (await a.get_or_set(KEY, upstream)).value == "v1"  # a's L1 still within its own ttl
    await a.drain()
    assert upstream.calls == 2
    assert (await a.get_or_set(KEY, upstream)).value == "v2"


async def test_background_refresh_failure_is_logged_counted_and_keeps_the_stale_value(
    manager: CacheManager, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing refresh never reaches callers: they keep the stale value; the failure is logged."""
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    clock.advance(20)
    upstream.error = UnavailableError("graph down")
    with caplog.at_level(logging.WARNING, logger="graphapp.cache"):
        assert (await manager.get_or_set(KEY, upstream)).source == "stale"
        await manager.drain()
    assert manager.stats.refresh_errors == 1
    assert "background refresh failed" in caplog.text
    assert (await manager.get_or_set(KEY, upstream)).value == "v1"


# --- failures and negatives -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [ThrottledError("429", retry_after=5), UnavailableError("503"), CircuitOpenError("graph")]
)
async def test_transient_fetch_failure_serves_stale_within_max_staleness(
    manager: CacheManager, clock: FakeClock, error: Exception
) -> None:
    """Past hard TTL a failing fetch is answered with the old value marked ``stale``, while it is younger
    than ``max_staleness``."""
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    clock.advance(500)
    upstream.error = error
    result = await manager.get_or_set(KEY, upstream)
    assert (result.source, result.value, result.age) == ("stale", "v1", 500)
    assert upstream.calls == 2


async def test_transient_fetch_failure_beyond_max_staleness_raises(manager: CacheManager, clock: FakeClock) -> None:
    """A value older than ``max_staleness`` is never served: the upstream error reaches the caller."""
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    clock.advance(POLICY.freshness.max_staleness)
    upstream.error = ThrottledError("429")
    with pytest.raises(ThrottledError):
        await manager.get_or_set(KEY, upstream)
    assert manager.stats.failures == 1
    assert manager.stats.fetch_errors == 1


async def test_permanent_fetch_failure_is_raised_even_with_a_stale_value(
    manager: CacheManager, clock: FakeClock
) -> None:
    """Only transient errors are masked; e.g. lost permissions must surface."""
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    clock.advance(500)
    upstream.error = AccessDeniedError("403")
    with pytest.raises(AccessDeniedError):
        await manager.get_or_set(KEY, upstream)


async def test_not_found_is_cached_briefly_and_reraised_without_fetching(
    make_manager: ManagerFactory, clock: FakeClock
) -> None:
    """A 404 is remembered for ``negative_ttl`` (in both tiers), then fetched again."""
    a, b = make_manager(), make_manager()
    upstream = Upstream()
    upstream.error = NotFoundError("no such user", status=404, upstream_code="Request_ResourceNotFound")
    with pytest.raises(NotFoundError):
        await a.get_or_set(KEY, upstream)
    with pytest.raises(NotFoundError) as from_l1:
        await a.get_or_set(KEY, upstream)
    with pytest.raises(NotFoundError) as from_l2:
        await b.get_or_set(KEY, upstream)
    assert upstream.calls == 1
    assert from_l1.value.message == from_l2.value.message == "no such user"
    assert from_l2.value.upstream_code == "Request_ResourceNotFound"
    assert from_l2.value.status == 404
    assert a.stats.negative_hits == b.stats.negative_hits == 1
    clock.advance(POLICY.freshness.negative_ttl)
    upstream.error = None
    upstream.value = "created since"
    assert (await a.get_or_set(KEY, upstream)).value == "created since"


async def test_value_too_large_is_returned_but_not_cached(manager: CacheManager, table: FakeTableClient) -> None:
    """Beyond one entity the caller still gets its value; it is counted and simply not cached."""
    upstream = Upstream(base64.b64encode(os.urandom(1_500_000)).decode())
    result = await manager.get_or_set(KEY, upstream)
    assert result.source == "miss"
    assert result.value == upstream.value
    assert (await manager.get_or_set(KEY, upstream)).source == "miss"
    assert upstream.calls == 2
    assert manager.stats.refused_too_large == 2
    assert not [row for row, _ in table.rows.values() if row["RowKey"].startswith("v~")]


# --- leases -----------------------------------------------------------------------------------------


async def test_a_miss_waits_for_the_lease_holders_value_instead_of_fetching(make_manager: ManagerFactory) -> None:
    """Instance b finds a's lease taken, polls the table and returns a's value as an L2 hit."""
    a, b = make_manager(), make_manager()
    slow, never = Upstream("from a"), Upstream("from b")
    slow.gate = asyncio.Event()
    holder = asyncio.create_task(a.get_or_set(KEY, slow))
    await until(lambda: slow.calls == 1, "a holding the lease and fetching")
    waiter = asyncio.create_task(b.get_or_set(KEY, never))
    await until(lambda: b.stats.lease_waits == 1, "b finding the lease taken")
    slow.gate.set()
    assert (await holder).source == "miss"
    result = await waiter
    assert (result.source, result.value, never.calls) == ("hit-l2", "from a", 0)
    assert b.stats.lease_waits == 1


async def test_lease_wait_running_out_serves_stale_if_any(
    make_manager: ManagerFactory, clock: FakeClock, table: FakeTableClient
) -> None:
    """A holder that never delivers: after ``lease_wait`` a value within max staleness is served."""
    manager = make_manager()
    upstream = Upstream("old")
    await manager.get_or_set(KEY, upstream)
    clock.advance(500)
    await _take_lease(table, clock)
    result = await manager.get_or_set(KEY, upstream)
    assert (result.source, result.value, upstream.calls) == ("stale", "old", 1)


async def test_lease_wait_running_out_without_stale_value_fetches_anyway(
    manager: CacheManager, table: FakeTableClient, clock: FakeClock
) -> None:
    """Availability wins over de-duplication when nothing else can answer."""
    await _take_lease(table, clock)
    upstream = Upstream("v")
    assert (await manager.get_or_set(KEY, upstream)).source == "miss"
    assert upstream.calls == 1


async def test_an_expired_lease_is_taken_over(manager: CacheManager, table: FakeTableClient, clock: FakeClock) -> None:
    """A lease older than ``lease_duration`` (its holder died) is taken over and released after use."""
    await _take_lease(table, clock)
    clock.advance(POLICY.lease_duration + 1)
    upstream = Upstream("v")
    assert (await manager.get_or_set(KEY, upstream)).source == "miss"
    assert manager.stats.lease_waits == 0
    assert table.lease_rows() == []


async def _take_lease(table: FakeTableClient, clock: FakeClock) -> None:
    """Another instance's lease on KEY that it never releases."""
    await table.create_entity(
        {
            "PartitionKey": KEY.partition_key,
            "RowKey": KEY.lease_row_key,
            "Owner": "someone else",
            "ExpiresAt": clock() + POLICY.lease_duration,
        }
    )


# --- invalidation -----------------------------------------------------------------------------------


async def test_group_invalidation_drops_the_whole_group_only(make_manager: ManagerFactory, clock: FakeClock) -> None:
    """Bumping a group's generation invalidates its entries at once here, within ``generation_ttl``
    elsewhere, and leaves other groups' entries alone."""
    a, b = make_manager(), make_manager()
    page1, page2 = CacheKey("mail", "alice/p1", "mail:alice"), CacheKey("mail", "alice/p2", "mail:alice")
    other = CacheKey("mail", "bob/p1", "mail:bob")
    upstream = Upstream("v1")
    for key in (page1, page2, other):
        await a.get_or_set(key, upstream)
        await b.get_or_set(key, upstream)
    assert upstream.calls == 3
    upstream.value = "v2"
    await a.invalidate_group("mail:alice")
    assert [(await a.get_or_set(k, upstream)).value for k in (page1, page2, other)] == ["v2", "v2", "v1"]
    assert (await b.get_or_set(page1, upstream)).value == "v1"  # b trusts its generation for up to 1 s
    clock.advance(POLICY.generation_ttl)
    assert [(await b.get_or_set(k, upstream)).source for k in (page1, page2, other)] == ["hit-l2"] * 3
    assert [(await b.get_or_set(k, upstream)).value for k in (page1, page2, other)] == ["v2", "v2", "v1"]
    assert upstream.calls == 5


async def test_key_invalidation_beats_a_fetch_that_started_before_it(make_manager: ManagerFactory) -> None:
    """A value fetched before ``invalidate`` is returned to its caller but not stored afterwards: the
    tombstone makes the conditional write fail."""
    a, b = make_manager(), make_manager()
    upstream = Upstream("before")
    upstream.gate = asyncio.Event()
    loading = asyncio.create_task(a.get_or_set(KEY, upstream))
    await until(lambda: upstream.calls == 1, "a's fetch under way")
    await b.invalidate(KEY)
    upstream.gate.set()
    assert (await loading).value == "before"
    assert a.stats.write_conflicts == 1
    upstream.value = "after"
    assert (await a.get_or_set(KEY, upstream)).value == "after"
    assert (await b.get_or_set(KEY, upstream)).value == "after"


async def test_key_invalidation_applies_at_once_in_the_same_instance(manager: CacheManager) -> None:
    """No waiting for ``l1_ttl`` on the instance that invalidated."""
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    upstream.value = "v2"
    await manager.invalidate(KEY)
    assert (await manager.get_or_set(KEY, upstream)).value == "v2"


# --- writes from notification data -----------------------------------------------------------------


def newer(version: int):  # type: ignore[no-untyped-def]
    """Replaces nothing, or a value of a lower ``v``."""
    return lambda current: current is None or current["v"] < version


async def test_put_if_serves_the_data_on_every_instance_without_a_fetch(make_manager: ManagerFactory) -> None:
    """Data written after the group's invalidation is read by this and other instances, no Graph call."""
    a, b = make_manager(), make_manager()
    page = CacheKey("mail", "alice/m1", "mail:alice")
    upstream = Upstream({"v": 1})
    await a.get_or_set(page, upstream)
    await a.invalidate_group("mail:alice")
    assert await a.put_if(page, {"v": 2}, newer(2))
    assert (await a.get_or_set(page, upstream)).value == {"v": 2}
    assert (await b.get_or_set(page, upstream)).value == {"v": 2}
    assert upstream.calls == 1


async def test_put_if_never_writes_an_older_version_even_over_an_invalidated_value(manager: CacheManager) -> None:
    """A redelivered older notification loses to the newer value the row holds, whatever its generation."""
    page = CacheKey("mail", "alice/m1", "mail:alice")
    assert await manager.put_if(page, {"v": 3}, newer(3))
    await manager.invalidate_group("mail:alice")
    assert not await manager.put_if(page, {"v": 2}, newer(2))
    upstream = Upstream({"v": 4})
    assert (await manager.get_or_set(page, upstream)).value == {"v": 4}  # invalidated: Graph answers


async def test_put_if_beats_a_fetch_that_started_before_it(make_manager: ManagerFactory) -> None:
    """A Graph answer fetched before the notification's data arrived is not written over it."""
    a, b = make_manager(), make_manager()
    upstream = Upstream({"v": 1})
    upstream.gate = asyncio.Event()
    loading = asyncio.create_task(a.get_or_set(KEY, upstream))
    await until(lambda: upstream.calls == 1, "a's fetch under way")
    assert await b.put_if(KEY, {"v": 2}, newer(2))
    upstream.gate.set()
    assert (await loading).value == {"v": 1}
    assert (await a.get_or_set(KEY, upstream)).value == {"v": 2}


async def test_put_if_with_the_table_down_writes_nothing_and_does_not_raise(
    manager: CacheManager, table: FakeTableClient
) -> None:
    """Best effort: the invalidation before it already made the cache correct."""
    table.down = True
    assert not await manager.put_if(KEY, {"v": 1}, newer(1))
    assert manager.stats.storage_errors >= 1


# --- degradation ------------------------------------------------------------------------------------


async def test_unreachable_table_behaves_as_a_miss_and_backs_off(
    manager: CacheManager, table: FakeTableClient, clock: FakeClock
) -> None:
    """With the table down calls still succeed (from upstream, honestly marked ``bypass``, then L1),
    errors are counted, and the table is left alone for ``storage_cooldown`` instead of costing every
    call a failure."""
    table.down = True
    upstream = Upstream("v")
    assert (await manager.get_or_set(KEY, upstream)).source == "bypass"
    assert manager.stats.storage_errors >= 1
    calls_while_down = table.calls
    assert (await manager.get_or_set(KEY, upstream)).source == "hit-l1"
    clock.advance(POLICY.l1_ttl)
    assert (await manager.get_or_set(KEY, upstream)).source == "bypass"
    assert manager.stats.bypassed == 2
    assert table.calls == calls_while_down
    table.down = False
    clock.advance(POLICY.storage_cooldown)
    assert (await manager.get_or_set(KEY, upstream)).source == "miss"
    assert (await manager.get_or_set(CacheKey("users", "x"), upstream)).source == "miss"
    clock.advance(POLICY.l1_ttl)
    assert (await manager.get_or_set(CacheKey("users", "x"), upstream)).source == "hit-l2"


async def test_table_failing_after_the_fetch_still_returns_the_value(
    manager: CacheManager, table: FakeTableClient
) -> None:
    """A successful upstream call is never turned into a failure by a storage write."""

    async def fetch_then_break_table() -> str:
        table.down = True
        return "v"

    assert (await manager.get_or_set(KEY, fetch_then_break_table)).value == "v"
    assert manager.stats.storage_errors >= 1


async def test_invalidation_that_cannot_be_stored_raises_but_applies_locally(
    manager: CacheManager, table: FakeTableClient
) -> None:
    """Losing an invalidation silently would serve outdated data: it raises ``UnavailableError`` (so a
    queue trigger retries) yet already applies in this instance."""
    upstream = Upstream("v1")
    await manager.get_or_set(KEY, upstream)
    table.down = True
    with pytest.raises(UnavailableError):
        await manager.invalidate_group("user:alice")
    upstream.value = "v2"
    assert (await manager.get_or_set(KEY, upstream)).value == "v2"


# --- stats ------------------------------------------------------------------------------------------


async def test_stats_snapshot_counts_each_outcome(manager: CacheManager, clock: FakeClock) -> None:
    """One call of each kind shows up once under its name; the snapshot is a detached copy."""
    upstream = Upstream("v")
    await manager.get_or_set(KEY, upstream)  # miss
    await manager.get_or_set(KEY, upstream)  # hit-l1
    clock.advance(POLICY.l1_ttl)
    await manager.get_or_set(KEY, upstream)  # hit-l2
    clock.advance(20)
    await manager.get_or_set(KEY, upstream)  # stale (+ one refresh)
    await manager.drain()
    gone = Upstream()
    gone.error = NotFoundError("gone")
    for _ in range(2):
        with pytest.raises(NotFoundError):
            await manager.get_or_set(CacheKey("users", "gone"), gone)  # failure, then negative hit
    snapshot = manager.stats.snapshot()
    expected = {"misses": 1, "hits_l1": 1, "hits_l2": 1, "stale": 1, "negative_hits": 1, "failures": 1}
    assert {k: snapshot[k] for k in expected} == expected
    assert snapshot["fetches"] == 3
    assert snapshot["refreshes"] == 1
    snapshot["misses"] = 99
    assert manager.stats.misses == 1
