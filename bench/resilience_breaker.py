"""Steady-state cost of the shared circuit breaker (closed) against Azurite.

Two instances (each its own TableClient, store and registry, like two app instances) call a trivial
dependency through the same breaker for a few seconds. Printed: per-call time with and without the
breaker, and the Table round trips each instance made per second (target: about one state read and one
shard write per instance per second, whatever the call rate).

    .venv/bin/python -m bench.resilience_breaker [--seconds 5] [--workers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from azure.data.tables.aio import TableClient, TableServiceClient

from devtools.azurite import Azurite
from shared.resilience import BreakerPolicy, BreakerRegistry, TableBreakerStore

KEY = "graph"


async def dependency() -> None:
    """A call that costs (almost) nothing, so the figures show the breaker's own overhead."""
    await asyncio.sleep(0)


async def drive(call: Callable[[], Awaitable[None]], seconds: float, workers: int) -> list[float]:
    """Run ``workers`` loops of ``call`` for ``seconds``; the duration of every call in seconds."""
    durations: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call()
            durations.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return durations


def row(name: str, durations: list[float], seconds: float, extra: str = "") -> str:
    ordered = sorted(durations)
    mean_us = statistics.fmean(ordered) * 1e6
    p50_us = ordered[len(ordered) // 2] * 1e6
    p99_us = ordered[int(len(ordered) * 0.99)] * 1e6
    rate = len(ordered) / seconds
    return f"| {name} | {len(ordered):,} | {rate:,.0f} | {mean_us:,.1f} | {p50_us:,.1f} | {p99_us:,.1f} |{extra}"


async def bench(connection: str, seconds: float, workers: int) -> None:
    table_name = "bench" + uuid.uuid4().hex[:12]
    async with TableServiceClient.from_connection_string(connection) as service:
        await service.create_table(table_name)
    clients = [TableClient.from_connection_string(connection, table_name) for _ in range(2)]
    policy = BreakerPolicy()
    registries = [BreakerRegistry(TableBreakerStore(client), policy) for client in clients]
    try:
        bare = await drive(dependency, seconds, 2 * workers)
        for registry in registries:  # warm up: first state read and table connection
            await registry.get(KEY).call(dependency)
            registry.store.stats.reads = registry.store.stats.writes = 0

        async def through(registry: BreakerRegistry) -> list[float]:
            breaker = registry.get(KEY)
            return await drive(lambda: breaker.call(dependency), seconds, workers)

        guarded = await asyncio.gather(*(through(registry) for registry in registries))
        bare_cost = seconds / len(bare) * 1e6
        guarded_cost = seconds / sum(len(durations) for durations in guarded) * 1e6
        print(f"2 instances x {workers} concurrent callers for {seconds:.0f} s; policy defaults (cache 1 s, flush 1 s)")
        print("(both instances share one event loop, so a call's latency includes its neighbours' turns)")
        print()
        print("| calls | n | calls/s | mean µs | p50 µs | p99 µs | Table reads/s | Table writes/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        print(row(f"bare call ({2 * workers} callers)", bare, seconds, " — | — |"))
        for n, (registry, durations) in enumerate(zip(registries, guarded, strict=True), start=1):
            stats = registry.store.stats
            tables = f" {stats.reads / seconds:.2f} | {stats.writes / seconds:.2f} |"
            print(row(f"breaker.call, instance {n}", durations, seconds, tables))
        print()
        print(f"event-loop time per call: bare {bare_cost:.2f} µs, through the breaker {guarded_cost:.2f} µs")
        print(f"=> breaker overhead in steady state: {guarded_cost - bare_cost:.2f} µs of CPU per call")
        clock = registries[0].store
        if isinstance(clock, TableBreakerStore):
            print(f"service-clock uncertainty after the run: ±{clock.clock.uncertainty * 1000:.1f} ms")
        snap = await registries[0].get(KEY).snapshot()
        print(f"shared window after the run: {snap.calls:,} calls, {snap.failures} failures, state {snap.state}")
    finally:
        for client in clients:
            await client.close()
        async with TableServiceClient.from_connection_string(connection) as service:
            await service.delete_table(table_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with Azurite() as azurite:
        asyncio.run(bench(azurite.connection_string, args.seconds, args.workers))


if __name__ == "__main__":
    main()
