"""Resilience costs: the shared circuit breaker in steady state, and Graph attempts under a 429 storm.

1. Breaker (closed) against Azurite: two instances (each its own TableClient, store and registry, like two
   app instances) call a trivial dependency through the same breaker for a few seconds. Printed: per-call
   time with and without the breaker, and the Table round trips each instance made per second (target:
   at most about one state read per instance per second, whatever the call rate).
2. 429 storm against the Graph simulator through the app's own gateway (services wiring): logical calls
   vs requests Graph received, for a full storm (every request 429, Retry-After 1) and a partial one
   (half the requests 429). The bound is RETRY_MAX_ATTEMPTS requests per logical call.

    .venv/bin/python -m bench.resilience [--seconds 5] [--workers 8] [--write]

Prints the report, then its figures as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from azure.data.tables.aio import TableClient, TableServiceClient

from bench.report import write_section
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


async def bench(connection: str, seconds: float, workers: int, figures: dict[str, float]) -> list[str]:
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
        out: list[str] = []
        bare_cost = seconds / len(bare) * 1e6
        guarded_cost = seconds / sum(len(durations) for durations in guarded) * 1e6
        out.append(
            f"2 instances x {workers} concurrent callers for {seconds:.0f} s; policy defaults (cache 1 s, flush 1 s)"
        )
        out.append("(both instances share one event loop, so a call's latency includes its neighbours' turns)")
        out.append("")
        out.append("| calls | n | calls/s | mean µs | p50 µs | p99 µs | Table reads/s | Table writes/s |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        out.append(row(f"bare call ({2 * workers} callers)", bare, seconds, " — | — |"))
        for n, (registry, durations) in enumerate(zip(registries, guarded, strict=True), start=1):
            stats = registry.store.stats
            tables = f" {stats.reads / seconds:.2f} | {stats.writes / seconds:.2f} |"
            out.append(row(f"breaker.call, instance {n}", durations, seconds, tables))
        out.append("")
        out.append(f"event-loop time per call: bare {bare_cost:.2f} µs, through the breaker {guarded_cost:.2f} µs")
        out.append(f"=> breaker overhead in steady state: {guarded_cost - bare_cost:.2f} µs of CPU per call")
        figures["breaker_overhead_us_per_call"] = round(guarded_cost - bare_cost, 2)
        figures["breaker_table_reads_per_s_per_instance"] = round(
            max(registry.store.stats.reads for registry in registries) / seconds, 2
        )
        clock = registries[0].store
        if isinstance(clock, TableBreakerStore):
            out.append(f"service-clock uncertainty after the run: ±{clock.clock.uncertainty * 1000:.1f} ms")
        snap = await registries[0].get(KEY).snapshot()
        out.append(f"shared window after the run: {snap.calls:,} calls, {snap.failures} failures, state {snap.state}")
        return out
    finally:
        for client in clients:
            await client.close()
        async with TableServiceClient.from_connection_string(connection) as service:
            await service.delete_table(table_name)


async def storm(connection: str, calls: int, figures: dict[str, float]) -> list[str]:
    """Logical Graph calls vs requests the simulator saw, under full and partial 429 storms."""
    import os

    from devtools.graphsim.client import SimControl
    from shared.resilience.retry import set_testing
    from shared.wiring import GRAPH, registry, settings
    from tests.fixtures.graphsim import GRAPHSIM_TOKEN, start_graphsim, stop_graphsim

    sim = start_graphsim()
    os.environ.update(
        AzureWebJobsStorage=connection,
        STORAGE_TABLE_PREFIX="bench" + uuid.uuid4().hex[:8],
        GRAPH_BASE_URL=sim.base_url,
        GRAPH_AUTH_MODE="static_token",
        GRAPH_STATIC_TOKEN=GRAPHSIM_TOKEN,
        BREAKER_MIN_CALLS="100000",
    )
    set_testing(True)  # waits are computed and charged to the budget, not slept: the figures stay exact
    out = [
        "| storm | logical calls | succeeded | Graph requests | requests per call | max allowed |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    try:
        with SimControl(sim.root_url) as control:
            users = [u["id"] for u in control.users()]
            scenarios = (
                ("every request 429, Retry-After 1", 1.0, "1000", "full_storm"),
                ("half the requests 429", 0.5, "1000", "half_storm"),
                ("every request 429, breaker on (5 consecutive failures)", 1.0, "5", "storm_with_breaker"),
            )
            for name, probability, consecutive, key in scenarios:
                os.environ["BREAKER_CONSECUTIVE_FAILURES"] = consecutive
                control.reset()
                await registry.reset()
                gateway = await registry.get(GRAPH)
                control.add_fault(path=r"^/users/[^/]+$", status=429, retry_after=1, probability=probability)
                results = []
                for batch in range(0, calls, 20):  # 20 callers at a time, as a busy instance would see them
                    logical = (gateway.get_user(users[i % len(users)]) for i in range(batch, min(calls, batch + 20)))
                    results += await asyncio.gather(*logical, return_exceptions=True)
                ok = sum(1 for r in results if not isinstance(r, BaseException))
                requests = control.count("GET /users/{id}")
                attempts = settings().retry_max_attempts
                out.append(f"| {name} | {calls} | {ok} | {requests} | {requests / calls:.2f} | {attempts} |")
                figures[f"{key}_graph_requests_per_call"] = round(requests / calls, 2)
    finally:
        set_testing(False)
        await registry.reset()
        stop_graphsim(sim.process)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with Azurite() as azurite:
        lines = asyncio.run(bench(azurite.connection_string, args.seconds, args.workers, figures))
        lines += ["", "429 storm through the app's gateway (SDK retry off; RETRY_MAX_ATTEMPTS=3):", ""]
        lines += asyncio.run(storm(azurite.connection_string, args.calls, figures))
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section("resilience", "python -m bench.resilience --write", report)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
