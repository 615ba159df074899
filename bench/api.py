"""Users API: latency per cache tier, Graph calls saved on a Zipf workload, and a fresh process's L2 hit.

Calls ``shared.api.views.get_user`` in-process with real ``azure.functions.HttpRequest`` objects and the
app's singletons (``shared.wiring.registry``) wired to Azurite and to the Graph simulator, which answers
every Graph request after a Graph-like base latency (50 ms by default). Starts and stops both itself.

    .venv/bin/python -m bench.api [--latency-ms 50] [--requests 20000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from bench._stack import ROOT, SHARED_CORES_NOTE, Stack, background_note, median, percentile, running_stack, verdict
from bench.report import machine, write_section
from shared.api import views
from shared.directory import USER_FIELDS
from shared.wiring import DIRECTORY, GRAPH, registry, settings

USERS = 1000
ZIPF_S = 1.1
SEED = 7
CONCURRENCY = 16  # in-flight handler calls during the Zipf workloads
L1_TARGET_MS = 1.0
L2_TARGET_MS = 10.0
REDUCTION_TARGET = 0.95


def user_request(user_id: str) -> func.HttpRequest:
    """What the host would pass for ``GET /api/users/{user_id}``."""
    return func.HttpRequest(
        "GET",
        f"http://127.0.0.1/api/users/{user_id}",
        headers={},
        params={},
        route_params={"user_id": user_id},
        body=b"",
    )


async def timed_get_user(user_id: str) -> tuple[float, str]:
    """One handler call: its duration in seconds and its ``X-Cache`` header."""
    request = user_request(user_id)
    started = time.perf_counter()
    # As the trigger calls it (triggers/users_api.py): the directory from the registry, passed in.
    response = await views.get_user(request, await registry.get(DIRECTORY), settings().cache_user_ttl_seconds)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET users/{user_id} answered {response.status_code}: {response.get_body()[:200]!r}")
    return elapsed, response.headers.get("X-Cache", "?")


async def fresh_process(env: dict[str, str]) -> None:
    """Apply ``env`` and drop every singleton: the next call builds clients as a new worker process would."""
    os.environ.update(env)
    await registry.reset()


@dataclass
class Timings:
    """Durations (seconds) of the calls answered from the tier asked for, and every ``X-Cache`` seen."""

    durations: list[float] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    def row(self, name: str, target_ms: float | None) -> str:
        ms = [d * 1000 for d in self.durations]
        med, p99 = median(ms), percentile(ms, 99)
        target = f"≤ {target_ms:g} ms: {verdict(med <= target_ms)}" if target_ms is not None else "—"
        return f"| {name} | {len(ms):,} | {med:.2f} | {p99:.2f} | {target} |"


async def timed_tier(user_ids: Sequence[str], tier: str) -> Timings:
    """One call per user, keeping the durations of the calls ``tier`` answered."""
    result = Timings()
    for user_id in user_ids:
        elapsed, source = await timed_get_user(user_id)
        result.sources[source] += 1
        if source == tier:
            result.durations.append(elapsed)
    return result


async def l1_hit_timings(user_ids: Sequence[str], count: int) -> Timings:
    """L1-hit path timing: ``count`` handler calls cycling over ``user_ids`` (each warmed into L1 first).

    Keeps the durations of the calls answered ``hit-l1`` (an entry whose 1 s L1 lifetime ran out is
    answered from L2 once and only counted in ``sources``). The registry must be wired already; reuse
    this for comparisons of the hot path (e.g. telemetry on/off).
    """
    for user_id in user_ids:
        await timed_get_user(user_id)
    result = Timings()
    for user_id in itertools.islice(itertools.cycle(user_ids), count):
        elapsed, source = await timed_get_user(user_id)
        result.sources[source] += 1
        if source == "hit-l1":
            result.durations.append(elapsed)
    return result


def zipf_sequence(user_ids: Sequence[str], count: int, s: float = ZIPF_S, seed: int = SEED) -> list[str]:
    """``count`` user ids drawn with Zipf(``s``) popularity; which user has which rank is shuffled."""
    rng = random.Random(seed)
    ranked = list(user_ids)
    rng.shuffle(ranked)
    cumulative = list(itertools.accumulate(1 / (k**s) for k in range(1, len(ranked) + 1)))
    total = cumulative[-1]
    return [ranked[min(bisect.bisect_left(cumulative, rng.random() * total), len(ranked) - 1)] for _ in range(count)]


@dataclass
class Workload:
    """How a request loop went: requests done, wall time, ``X-Cache`` mix (empty without the cache)."""

    done: int
    seconds: float
    sources: Counter[str]


async def run_workload(
    sequence: Sequence[str], call: Callable[[str], Awaitable[str | None]], concurrency: int, max_seconds: float
) -> Workload:
    """Run ``call`` over ``sequence`` in order with ``concurrency`` workers; stops early at ``max_seconds``."""
    items: Iterator[str] = iter(sequence)
    sources: Counter[str] = Counter()
    done = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal done
        for user_id in items:
            source = await call(user_id)
            done += 1
            if source is not None:
                sources[source] += 1
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Workload(done, time.perf_counter() - started, sources)


async def through_handler(user_id: str) -> str:
    return (await timed_get_user(user_id))[1]


async def gateway_only(user_id: str) -> None:
    """The same read with no cache: straight to the resilient Graph gateway."""
    await (await registry.get(GRAPH)).get_user(user_id, select=list(USER_FIELDS))


def graph_calls(stack: Stack) -> int:
    return int(stack.sim.stats()["total"])


CHILD = """
import asyncio, json, sys, time
started = time.perf_counter()
import azure.functions as func
from shared.api import views
from shared.wiring import DIRECTORY, registry, settings
imported = time.perf_counter()

async def main():
    user_id = sys.argv[1]
    request = func.HttpRequest("GET", "http://127.0.0.1/api/users/" + user_id, headers={}, params={},
                               route_params={"user_id": user_id}, body=b"")
    before = time.perf_counter()
    response = await views.get_user(request, await registry.get(DIRECTORY), settings().cache_user_ttl_seconds)
    after = time.perf_counter()
    loaded = [m for m in sys.modules if m == "msgraph" or m.startswith("msgraph.")]
    models = [m for m in loaded if m.startswith("msgraph.generated.models")]
    await registry.aclose()
    return {"status": response.status_code, "x_cache": response.headers.get("X-Cache"),
            "import_ms": (imported - started) * 1000, "first_call_ms": (after - before) * 1000,
            "msgraph_modules": len(loaded), "model_modules": len(models)}

print(json.dumps(asyncio.run(main())))
"""


def fresh_process_l2_hit(env: dict[str, str], user_id: str) -> dict[str, Any]:
    """A new Python process answers one request for a user already in L2; what it reports, plus its wall time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, user_id],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"fresh-process check failed ({done.returncode}):\n{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["wall_ms"] = wall * 1000
    return report


async def bench(stack: Stack, latency_ms: float, requests: int, tier_users: int) -> str:
    """Every measurement, as the markdown report; the app's clients are closed also when one fails."""
    try:
        return await measure(stack, latency_ms, requests, tier_users)
    finally:
        await registry.aclose()


TELEMETRY_TARGET = 0.05


async def telemetry_overhead(user_ids: Sequence[str], rounds: int = 4, count: int = 2000) -> list[str]:
    """Median L1-hit time with telemetry off and on (OpenTelemetry SDK meter and tracer providers
    installed, as with Azure Monitor but without an exporter), in alternating rounds."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from shared import metrics

    samples: dict[str, list[float]] = {"off": [], "on": []}
    meter_provider, tracer_provider = MeterProvider(), TracerProvider()
    try:
        for _ in range(rounds):
            for mode in ("off", "on"):
                if mode == "on":
                    metrics.install(meter_provider, tracer_provider)
                else:
                    metrics.uninstall()
                samples[mode] += (await l1_hit_timings(user_ids, count)).durations
    finally:
        metrics.uninstall()
        meter_provider.shutdown()
    off, on = (statistics.median(samples[m]) * 1000 for m in ("off", "on"))
    change = on / off - 1
    return [
        f"Telemetry overhead on the L1-hit path ({rounds} alternating rounds of {count:,} calls each):",
        "",
        "| telemetry | n | median ms |",
        "| --- | ---: | ---: |",
        f"| off (no providers: every record call is a None check) | {len(samples['off']):,} | {off:.4f} |",
        f"| on (OpenTelemetry SDK providers, no exporter) | {len(samples['on']):,} | {on:.4f} |",
        "",
        f"Difference: **{change:+.1%}** (target within ±{TELEMETRY_TARGET:.0%}: "
        f"{verdict(abs(change) <= TELEMETRY_TARGET)}).",
    ]


async def measure(stack: Stack, latency_ms: float, requests: int, tier_users: int) -> str:
    users = [user["id"] for user in stack.sim.users()]
    if len(users) < USERS:
        raise RuntimeError(f"the simulator has {len(users)} users, expected {USERS}")
    lines: list[str] = []

    # 1. Latency per tier. Misses fill L2; a fresh registry (empty L1) then reads them back from L2.
    tiers_env = stack.app_env()
    await fresh_process(tiers_env)
    first_miss, _ = await timed_get_user(users[0])  # builds every client, imports the Graph SDK
    cohort = users[1 : 1 + tier_users]
    misses = await timed_tier(cohort, "miss")
    l1 = await l1_hit_timings(cohort[:20], 2000)
    await fresh_process(tiers_env)
    first_l2, _ = await timed_get_user(cohort[0])  # builds clients, opens the Storage connection
    l2 = await timed_tier(cohort[1:], "hit-l2")

    lines += [
        f"Graph simulator base latency {latency_ms:g} ms; handler `shared.api.views.get_user` called in-process.",
        "",
        "| Tier | n | median ms | p99 ms | target (median) |",
        "| --- | ---: | ---: | ---: | --- |",
        l1.row("L1 hit (process memory)", L1_TARGET_MS),
        l2.row("L2 hit (Table Storage, empty L1)", L2_TARGET_MS),
        misses.row("miss (Graph + L2 write)", None),
        "",
        f"Not counted above: the process's first miss {first_miss * 1000:.0f} ms (builds clients, imports the SDK); "
        f"the first L2 hit after a registry reset {first_l2 * 1000:.0f} ms (builds clients). "
        f"X-Cache seen: L1 loop {dict(l1.sources)}, L2 pass {dict(l2.sources)}, miss pass {dict(misses.sources)}.",
    ]

    # 1b. Telemetry on (SDK providers, no exporter) vs off on the L1-hit path, interleaved rounds.
    lines += ["", *await telemetry_overhead(cohort[:20])]

    # 2. Graph calls on a Zipf workload, through the cache (cold at start, then again warm) and without it.
    sequence = zipf_sequence(users, requests)
    await fresh_process(stack.app_env())
    stack.sim.clear_requests()
    cold = await run_workload(sequence, through_handler, CONCURRENCY, max_seconds=120)
    cold_calls = graph_calls(stack)
    stack.sim.clear_requests()
    warm_sequence = zipf_sequence(users, requests, seed=SEED + 1)
    warm = await run_workload(warm_sequence, through_handler, CONCURRENCY, max_seconds=120)
    warm_calls = graph_calls(stack)
    stack.sim.clear_requests()
    bare = await run_workload(sequence[: min(requests, 1000)], gateway_only, 2 * CONCURRENCY, max_seconds=20)
    bare_calls = graph_calls(stack)
    distinct = len(set(sequence[: cold.done]))

    def per_thousand(calls: int, done: int) -> float:
        return 1000 * calls / done if done else float("nan")

    bare_rate = per_thousand(bare_calls, bare.done)
    cold_rate = per_thousand(cold_calls, cold.done)
    warm_rate = per_thousand(warm_calls, warm.done)
    reduction = 1 - cold_rate / bare_rate
    lines += [
        "",
        f"Zipf({ZIPF_S}) over {USERS:,} users, {CONCURRENCY} requests in flight (no cache: {2 * CONCURRENCY}); "
        "Graph calls counted in the simulator's request log.",
        "",
        "| Workload | requests | wall s | requests/s | Graph calls | per 1,000 requests | X-Cache |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, run, calls in (
        ("no cache (gateway directly)", bare, bare_calls),
        ("cached, cold start (empty L1 and L2)", cold, cold_calls),
        ("cached, warm (next draw of the same workload)", warm, warm_calls),
    ):
        mix = ", ".join(f"{k} {v:,}" for k, v in sorted(run.sources.items())) or "—"
        rate, throughput = per_thousand(calls, run.done), run.done / run.seconds
        lines.append(
            f"| {name} | {run.done:,} | {run.seconds:.1f} | {throughput:,.0f} | {calls:,} | {rate:.1f} | {mix} |"
        )
    lines += [
        "",
        f"Graph calls reduced by **{reduction:.1%}** from a cold cache ({cold.done:,} requests touching {distinct:,} "
        f"distinct users, so at least {per_thousand(distinct, cold.done):.1f} calls per 1,000 while filling) and "
        f"by {1 - warm_rate / bare_rate:.1%} once warm; target ≥ {REDUCTION_TARGET:.0%}: "
        f"{verdict(reduction >= REDUCTION_TARGET)}.",
    ]

    # 3. A fresh process answering from L2: no Graph SDK models should be imported.
    children = [fresh_process_l2_hit(tiers_env, cohort[i]) for i in range(3)]
    lines += [
        "",
        "Fresh process, first request for a user already in L2 (`python -c`, 3 runs):",
        "",
        "| run | X-Cache | msgraph modules loaded | of them `msgraph.generated.models` | import ms | first call ms "
        "| process wall ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, child in enumerate(children, start=1):
        lines.append(
            f"| {n} | {child['x_cache']} | {child['msgraph_modules']} | {child['model_modules']} "
            f"| {child['import_ms']:.0f} | {child['first_call_ms']:.0f} | {child['wall_ms']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0, help="simulator base latency per Graph request")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per Zipf workload")
    parser.add_argument("--tier-users", type=int, default=100, help="users timed per tier (misses, then L2 hits)")
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()
    background = background_note()

    graphsim_args = ("--users", str(USERS), "--messages-per-user", "1", "--latency-ms", str(args.latency_ms))
    with running_stack(*graphsim_args) as stack:
        body = asyncio.run(bench(stack, args.latency_ms, args.requests, args.tier_users))
    report = f"{body}\n\nMachine: {machine()}. {SHARED_CORES_NOTE} {background}"
    print(report)
    if args.write:
        write_section("api", "python -m bench.api --write", report)


if __name__ == "__main__":
    main()
