"""Users API: latency per cache tier, Graph calls saved on a Zipf workload (cache only, then on a mirrored
directory with its initial sync counted), and a fresh process's L2 hit.

Calls ``shared.api.views.get_user`` in-process with real ``azure.functions.HttpRequest`` objects and the
app's singletons (``shared.wiring.registry``) wired to Azurite and to the Graph simulator, which answers
every Graph request after a Graph-like base latency (50 ms by default). Starts and stops both itself.

    .venv/bin/python -m bench.api [--latency-ms 50] [--requests 20000] [--write]

Prints the report, then its figures as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench._stack import ROOT, SHARED_CORES_NOTE, Stack, background_note, median, running_stack, verdict
from bench.report import machine, write_section
from bench.users_workload import (
    CONCURRENCY,
    SEED,
    USERS,
    ZIPF_S,
    fresh_process,
    gateway_only,
    graph_calls,
    l1_hit_timings,
    run_workload,
    through_handler,
    timed_get_user,
    timed_tier,
    zipf_sequence,
)
from shared.wiring import registry
from shared.wiring_mirror import MIRROR

L1_TARGET_MS = 1.0
L2_TARGET_MS = 10.0
REDUCTION_TARGET = 0.95
MIRROR_CALLS_TARGET = 5.0  # Graph calls per 1,000 requests from a cold start, the initial sync included
MIRRORED = {"GRAPH_SUBSCRIPTIONS": "users=updated,deleted", "WEBHOOK_BASE_URL": "https://bench.invalid/api"}


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


async def bench(stack: Stack, latency_ms: float, requests: int, tier_users: int) -> tuple[str, dict[str, Any]]:
    """Every measurement: the markdown report and the JSON figures; clients are closed also when one fails."""
    try:
        report, figures = await measure(stack, latency_ms, requests, tier_users)
        mirror_lines, mirror_figures = await mirror_workload(stack, requests, tier_users, figures)
        return "\n".join([report, "", *mirror_lines]), {**figures, **mirror_figures}
    finally:
        await registry.aclose()


async def _safety_net_timer(period: float = 60.0) -> None:
    """The mirror's safety-net timer as the app runs it (every minute; a round when none ran for 300 s)."""
    coordinator = await registry.get(MIRROR)
    while True:
        await asyncio.sleep(period)
        await coordinator.tick()


async def mirror_workload(
    stack: Stack, requests: int, tier_users: int, tiers: dict[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """The same Zipf workload on a mirrored directory from a cold start, the initial sync's Graph requests
    counted; then the mirror-hit latency beside the L1 / L2 medians measured above."""
    users = [user["id"] for user in stack.sim.users()]
    await fresh_process(stack.app_env(**MIRRORED))
    stack.sim.clear_requests()
    started = time.perf_counter()
    sync = await (await registry.get(MIRROR)).run_round()
    sync_seconds, sync_calls = time.perf_counter() - started, graph_calls(stack)
    timer = asyncio.create_task(_safety_net_timer())  # keeps a long workload's mirror in sync, counted too
    try:
        workload = await run_workload(zipf_sequence(users, requests), through_handler, CONCURRENCY, max_seconds=900)
    finally:
        timer.cancel()
    calls = graph_calls(stack)
    hits = await timed_tier(users[1 : 1 + tier_users], "mirror")
    per_thousand = 1000 * calls / workload.done
    mirror_ms = median([d * 1000 for d in hits.durations])
    mix = ", ".join(f"{k} {v:,}" for k, v in sorted(workload.sources.items()))
    assert sync.result is not None
    lines = [
        f"Mirrored directory (`GRAPH_SUBSCRIPTIONS=users`): the same Zipf({ZIPF_S}) workload over {USERS:,} users, "
        f"{workload.done:,} requests, {CONCURRENCY} in flight, from a cold start; the mirror's initial sync runs "
        "first and its Graph requests are counted.",
        "",
        "| Figure | value |",
        "| --- | ---: |",
        f"| initial sync: Graph requests / pages / wall s | {sync_calls} / {sync.result.pages} / {sync_seconds:.1f} |",
        f"| workload: wall s | {workload.seconds:.1f} |",
        f"| Graph calls in all (sync + workload) | {calls:,} |",
        f"| **Graph calls per 1,000 requests** | **{per_thousand:.2f}** (target ≤ {MIRROR_CALLS_TARGET:g}: "
        f"{verdict(per_thousand <= MIRROR_CALLS_TARGET)}; "
        f"cache only, cold: {tiers['zipf_cold_graph_calls_per_1000']}) |",
        "",
        f"X-Cache of the workload: {mix}.",
        "",
        "| Tier | n | median ms |",
        "| --- | ---: | ---: |",
        f"| L1 hit (process memory) | {tiers['l1_hits']:,} | {tiers['l1_hit_median_ms']:.2f} |",
        f"| mirror hit (state row cached 1 s; user row, + alias row by UPN) | {len(hits.durations):,} "
        f"| {mirror_ms:.2f} |",
        f"| L2 hit (Table Storage, empty L1) | {tiers['l2_hits']:,} | {tiers['l2_hit_median_ms']:.2f} |",
    ]
    figures = {
        "mirror_graph_calls_per_1000": round(per_thousand, 3),
        "mirror_initial_sync_graph_requests": sync_calls,
        "mirror_hit_median_ms": round(mirror_ms, 3),
    }
    return lines, figures


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


async def measure(stack: Stack, latency_ms: float, requests: int, tier_users: int) -> tuple[str, dict[str, Any]]:
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
    figures = {
        "l1_hits": len(l1.durations),
        "l1_hit_median_ms": round(median([d * 1000 for d in l1.durations]), 3),
        "l2_hits": len(l2.durations),
        "l2_hit_median_ms": round(median([d * 1000 for d in l2.durations]), 3),
        "miss_median_ms": round(median([d * 1000 for d in misses.durations]), 3),
        "zipf_cold_graph_calls_per_1000": round(cold_rate, 1),
        "zipf_warm_graph_calls_per_1000": round(warm_rate, 1),
        "zipf_no_cache_graph_calls_per_1000": round(bare_rate, 1),
        "fresh_process_l2_hit_wall_ms": round(median([child["wall_ms"] for child in children])),
    }
    return "\n".join(lines), figures


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
        body, figures = asyncio.run(bench(stack, args.latency_ms, args.requests, args.tier_users))
    report = f"{body}\n\nMachine: {machine()}. {SHARED_CORES_NOTE} {background}"
    print(report)
    if args.write:
        write_section("api", "python -m bench.api --write", report)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
