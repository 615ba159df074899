"""The shared breaker on real Table Storage (Azurite): two instances, each with its own table client, store,
clock and in-memory copy of the state, sharing one table the way scaled-out app instances do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from azure.data.tables.aio import TableClient, TableServiceClient

from devtools.azurite import connection_string, free_port
from shared.errors import CircuitOpenError, UnavailableError
from shared.resilience import BreakerPolicy, BreakerRegistry, State, TableBreakerStore
from shared.resilience.breaker import Breaker
from shared.resilience.breaker_store import StoreConflict
from shared.storage import safe_key

pytestmark = pytest.mark.integration

KEY = "graph"
POLICY = BreakerPolicy(
    failure_ratio=0.5,
    min_calls=10,
    window_seconds=10.0,
    consecutive_failures=5,
    open_base_seconds=0.5,
    open_max_seconds=4.0,
    probe_lease_seconds=5.0,
    state_cache_seconds=0.1,
    flush_interval_seconds=0.2,
    storage_retry_seconds=1.0,
)
Instance = Callable[[BreakerPolicy], Awaitable[BreakerRegistry]]


@pytest.fixture(name="table_name")
async def _table_name(storage_connection_string: str, unique_name: str) -> AsyncIterator[str]:
    """A fresh table for the test, deleted afterwards."""
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        await service.create_table(unique_name)
        yield unique_name
        await service.delete_table(unique_name)


@pytest.fixture(name="instance")
async def _instance(storage_connection_string: str, table_name: str) -> AsyncIterator[Instance]:
    """Builds app instances on the test's table: own TableClient, store and registry each; closed at the end."""
    clients: list[TableClient] = []

    async def make(policy: BreakerPolicy) -> BreakerRegistry:
        client = TableClient.from_connection_string(storage_connection_string, table_name, retry_total=0)
        clients.append(client)
        return BreakerRegistry(TableBreakerStore(client, timeout=policy.storage_timeout_seconds), policy)

    yield make
    for client in clients:
        await client.close()


def store_of(registry: BreakerRegistry) -> TableBreakerStore:
    assert isinstance(registry.store, TableBreakerStore)
    return registry.store


async def unavailable() -> None:
    await asyncio.sleep(0)
    raise UnavailableError("503", status=503)


async def ok() -> str:
    return "ok"


async def trip(breaker: Breaker) -> None:
    for _ in range(POLICY.consecutive_failures):
        with pytest.raises(UnavailableError):
            await breaker.call(unavailable)
    assert (await breaker.snapshot()).state is State.OPEN


async def until_half_open(*breakers: Breaker, timeout: float = 5.0) -> None:
    """Poll (status reads, no calls) until every instance sees the open period over."""
    deadline = time.monotonic() + timeout
    for breaker in breakers:
        while (await breaker.snapshot()).state is not State.HALF_OPEN:
            assert time.monotonic() < deadline, "open period never ended"
            await asyncio.sleep(0.05)


async def state_row(registry: BreakerRegistry) -> dict[str, float]:
    row = await registry.store.read(safe_key(KEY), "state")
    assert row is not None
    return {name: float(value) for name, value in row.values.items() if name != "State"}


async def test_table_store_honours_conditional_writes_and_learns_service_time(instance: Instance) -> None:
    """Insert of an existing row and replace with a stale ETag conflict; a stale delete is a no-op; the clock
    syncs from the responses."""
    store = store_of(await instance(POLICY))
    assert await store.read("p", "r") is None
    etag = await store.insert("p", "r", {"N": 1, "X": 0.5, "S": "a"})
    with pytest.raises(StoreConflict):
        await store.insert("p", "r", {"N": 2})
    fresh = await store.replace("p", "r", {"N": 2, "X": 1.5, "S": "b"}, etag)
    with pytest.raises(StoreConflict):
        await store.replace("p", "r", {"N": 3}, etag)
    await store.delete("p", "r", etag)
    row = await store.read("p", "r")
    assert row is not None
    assert (dict(row.values), row.etag) == ({"N": 2, "X": 1.5, "S": "b"}, fresh)
    assert [r.key for r in await store.scan("p")] == ["r"]
    assert store.clock.uncertainty < 0.05  # pinned by the writes' ETags, not just 1-second Date headers
    assert abs(store.now() - time.time()) < 0.05  # Azurite runs on this machine's clock
    assert store.stats.conflicts == 3  # the second insert, the stale replace, the stale delete


async def test_concurrent_failures_on_two_instances_are_all_counted(instance: Instance) -> None:
    """200 failures gathered at once, 100 per instance, end up as 200 in the shared window: no lost counts,
    written in a handful of batched shard writes rather than one per call."""
    counting_only = replace(POLICY, min_calls=10_000, consecutive_failures=10_000)
    a, b = await instance(counting_only), await instance(counting_only)

    async def failing_call(registry: BreakerRegistry) -> None:
        with pytest.raises(UnavailableError):
            await registry.get(KEY).call(unavailable)

    await asyncio.gather(*(failing_call(registry) for registry in (a, b) for _ in range(100)))
    await asyncio.gather(a.flush(), b.flush())
    snap = await a.get(KEY).snapshot()
    assert (snap.state, snap.calls, snap.failures) == (State.CLOSED, 200, 200)
    assert store_of(a).stats.writes < 20
    assert store_of(b).stats.writes < 20


async def test_exactly_one_probe_runs_across_both_instances(instance: Instance) -> None:
    """After the open period, 50 concurrent callers on each instance race: one probe runs, 99 are refused,
    and its success closes the breaker for both."""
    a, b = await instance(POLICY), await instance(POLICY)
    await trip(a.get(KEY))
    await until_half_open(a.get(KEY), b.get(KEY))
    probes = 0

    async def probe() -> str:
        nonlocal probes
        probes += 1
        await asyncio.sleep(0.3)
        return "probed"

    results = await asyncio.gather(
        *(registry.get(KEY).call(probe) for _ in range(50) for registry in (a, b)), return_exceptions=True
    )
    assert probes == 1
    assert store_of(a).stats.conflicts + store_of(b).stats.conflicts >= 1  # the instances raced for the lease
    assert results.count("probed") == 1
    assert sum(isinstance(result, CircuitOpenError) for result in results) == 99
    await asyncio.sleep(POLICY.state_cache_seconds)
    assert await a.get(KEY).call(ok) == "ok"
    assert await b.get(KEY).call(ok) == "ok"
    assert (await b.get(KEY).snapshot()).state is State.CLOSED


async def test_failed_probe_reopens_longer_and_a_later_success_closes(instance: Instance) -> None:
    """A failed probe doubles the open period (0.5 s → 1 s) in the shared row; the next probe, from the other
    instance, succeeds and closes the breaker with the escalation reset."""
    a, b = await instance(POLICY), await instance(POLICY)
    await trip(a.get(KEY))
    first = await state_row(a)
    assert first["OpenUntil"] - first["Since"] == pytest.approx(0.5)
    await until_half_open(a.get(KEY))
    with pytest.raises(UnavailableError):
        await a.get(KEY).call(unavailable)
    second = await state_row(a)
    assert second["Trips"] == 2
    assert second["OpenUntil"] - second["Since"] == pytest.approx(1.0)
    await until_half_open(b.get(KEY))
    assert await b.get(KEY).call(ok) == "ok"
    closed = await b.get(KEY).snapshot()
    assert (closed.state, closed.trips, closed.total_trips) == (State.CLOSED, 0, 2)


async def test_racing_trips_hit_a_stale_etag_and_trip_once(instance: Instance) -> None:
    """Both instances hold the same state row (same ETag) and both decide to trip: one replace wins, the other
    gets 412, re-reads, sees the trip and accepts it. The breaker tripped exactly once."""
    batched = replace(POLICY, flush_interval_seconds=60.0, consecutive_failures=1000)
    a, b = await instance(batched), await instance(batched)
    await a.reset(KEY)  # the state row exists: racing writers go through ETag-conditional replaces

    async def failures(registry: BreakerRegistry, times: int) -> None:
        for _ in range(times):
            with pytest.raises(UnavailableError):
                await registry.get(KEY).call(unavailable)

    await failures(a, 5)
    await failures(b, 4)
    await asyncio.gather(a.flush(), b.flush())  # 9 failures shared: below min_calls, no trip
    await failures(a, 1)
    await failures(b, 1)  # now each instance, adding its own failure to the other's, counts at least 10
    conflicts_before = store_of(a).stats.conflicts + store_of(b).stats.conflicts
    await asyncio.gather(a.flush(), b.flush())
    assert store_of(a).stats.conflicts + store_of(b).stats.conflicts == conflicts_before + 1
    row = await state_row(a)
    assert (row["Trips"], row["TotalTrips"]) == (1, 1)
    assert (await b.get(KEY).snapshot()).state is State.OPEN


async def test_crashed_probe_lets_the_other_instance_probe_after_lease_expiry(instance: Instance) -> None:
    """A probe that dies without reporting (its task cancelled) blocks the other instance only until the
    lease expires; then that instance probes and closes the breaker."""
    short_lease = replace(POLICY, probe_lease_seconds=0.5)
    a, b = await instance(short_lease), await instance(short_lease)
    await trip(a.get(KEY))
    await until_half_open(a.get(KEY), b.get(KEY))
    probing = asyncio.Event()

    async def hang() -> None:
        probing.set()  # the lease is taken before the probe's dependency call starts
        await asyncio.Event().wait()

    crashed = asyncio.create_task(a.get(KEY).call(hang))
    await probing.wait()
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    refused = 0
    deadline = time.monotonic() + 5.0
    while True:
        try:
            assert await b.get(KEY).call(ok) == "ok"
            break
        except CircuitOpenError:
            refused += 1
            assert time.monotonic() < deadline, "the crashed probe's lease never expired"
            await asyncio.sleep(0.05)
    assert refused >= 1
    assert (await a.get(KEY).snapshot()).state is State.CLOSED


@pytest.fixture(name="dead_table")
async def _dead_table() -> AsyncIterator[TableClient]:
    """A table client pointed at a port nobody listens on."""
    port = free_port()
    client = TableClient.from_connection_string(connection_string("127.0.0.1", port, port, port), "x", retry_total=0)
    yield client
    await client.close()


async def test_unreachable_table_fail_open_keeps_serving_through_a_local_breaker(dead_table: TableClient) -> None:
    """fail_open: calls still run and are still protected (by an in-process breaker); no azure error escapes,
    and the status page says the store is unavailable."""
    registry = BreakerRegistry(TableBreakerStore(dead_table), POLICY)
    breaker = registry.get(KEY)
    assert await breaker.call(ok) == "ok"
    for _ in range(POLICY.consecutive_failures):
        with pytest.raises(UnavailableError):
            await breaker.call(unavailable)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    snap = await breaker.snapshot()
    assert (snap.storage, snap.state) == ("unavailable", State.OPEN)
    with pytest.raises(UnavailableError, match="breaker store unreachable"):
        await registry.isolate(KEY)


async def test_unreachable_table_fail_closed_refuses_calls(dead_table: TableClient) -> None:
    """fail_closed: an unreachable store refuses calls with CircuitOpenError (retry when the store is retried)."""
    breaker = BreakerRegistry(TableBreakerStore(dead_table), replace(POLICY, storage_outage="fail_closed")).get(KEY)
    called = False

    async def dependency() -> None:
        nonlocal called
        called = True

    with pytest.raises(CircuitOpenError) as refused:
        await breaker.call(dependency)
    assert refused.value.retry_after == pytest.approx(POLICY.storage_retry_seconds, abs=0.2)
    assert not called
