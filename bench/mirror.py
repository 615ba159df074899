"""Directory mirror: Graph calls of a Zipf users workload from a cold start (initial sync counted), mirror-hit
latency beside L1/L2, and the cost of an initial sync of a large tenant and of a round after 100 changes.

Everything runs in-process with the app's own wiring (``shared.wiring.registry``) on Azurite and the Graph
simulator, which it starts and stops itself.

    .venv/bin/python -m bench.mirror [--latency-ms 50] [--requests 20000] [--tenant 10000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench._stack import SHARED_CORES_NOTE, Stack, background_note, median, running_stack, verdict
from bench.api import (
    CONCURRENCY,
    USERS,
    ZIPF_S,
    fresh_process,
    l1_hit_timings,
    run_workload,
    through_handler,
    timed_tier,
    zipf_sequence,
)
from bench.report import machine, write_section
from shared.wiring import registry
from shared.wiring_mirror import MIRROR, MIRROR_STORE

CALLS_TARGET = 5.0  # Graph calls per 1,000 requests, initial sync included
MIRRORED = {"GRAPH_SUBSCRIPTIONS": "users=updated,deleted", "WEBHOOK_BASE_URL": "https://bench.invalid/api"}


def graph_calls(stack: Stack) -> int:
    return int(stack.sim.stats()["total"])


async def _safety_net_timer(period: float = 60.0) -> None:
    coordinator = await registry.get(MIRROR)
    while True:
        await asyncio.sleep(period)
        await coordinator.tick()


async def zipf_with_mirror(stack: Stack, requests: int, tier_users: int) -> tuple[list[str], dict[str, Any]]:
    users = [user["id"] for user in stack.sim.users()]
    cohort = users[1 : 1 + tier_users]
    # L1 / L2 on the cache path (not mirrored), for comparison.
    plain = stack.app_env()
    await fresh_process(plain)
    await timed_tier(users[:1], "miss")
    await timed_tier(cohort, "miss")
    l1 = await l1_hit_timings(cohort[:20], 2000)
    await fresh_process(plain)
    await timed_tier(users[:1], "hit-l2")
    l2 = await timed_tier(cohort[1:], "hit-l2")

    # Mirrored, cold: the initial sync, then the workload; every Graph request counted.
    await fresh_process(stack.app_env(**MIRRORED))
    stack.sim.clear_requests()
    started = time.perf_counter()
    sync = await (await registry.get(MIRROR)).run_round()
    sync_seconds = time.perf_counter() - started
    sync_calls = graph_calls(stack)
    # The safety-net timer runs as in the app (every minute; a round when none ran for 300 s), so a workload
    # longer than MIRROR_MAX_STALENESS_SECONDS keeps its mirror in sync; its rounds' Graph calls count too.
    timer = asyncio.create_task(_safety_net_timer())
    try:
        workload = await run_workload(zipf_sequence(users, requests), through_handler, CONCURRENCY, max_seconds=900)
    finally:
        timer.cancel()
    calls = graph_calls(stack)
    mirror_hits = await timed_tier(cohort, "mirror")
    per_thousand = 1000 * calls / workload.done
    l1_ms, l2_ms, mirror_ms = (median([d * 1000 for d in t.durations]) for t in (l1, l2, mirror_hits))
    mix = ", ".join(f"{k} {v:,}" for k, v in sorted(workload.sources.items()))
    assert sync.result is not None
    lines = [
        f"Zipf({ZIPF_S}) over {USERS:,} users, {workload.done:,} requests, {CONCURRENCY} in flight, from a cold "
        "start: the mirror's initial sync runs first and its Graph requests are counted.",
        "",
        "| Figure | value |",
        "| --- | ---: |",
        f"| initial sync: Graph requests / pages | {sync_calls} / {sync.result.pages} |",
        f"| initial sync: wall s | {sync_seconds:.1f} |",
        f"| workload: wall s | {workload.seconds:.1f} |",
        f"| Graph calls in all (sync + workload) | {calls:,} |",
        f"| **Graph calls per 1,000 requests** | **{per_thousand:.2f}** (target ≤ {CALLS_TARGET:g}: "
        f"{verdict(per_thousand <= CALLS_TARGET)}; cache only, cold: 47.9) |",
        "",
        f"X-Cache of the workload: {mix}.",
        "",
        "| Tier | n | median ms |",
        "| --- | ---: | ---: |",
        f"| L1 hit (process memory) | {len(l1.durations):,} | {l1_ms:.2f} |",
        f"| mirror hit (state row cached 1 s; user row, + alias row by UPN) | {len(mirror_hits.durations):,} "
        f"| {mirror_ms:.2f} |",
        f"| L2 hit (Table Storage, empty L1) | {len(l2.durations):,} | {l2_ms:.2f} |",
    ]
    figures = {
        "zipf_requests": workload.done,
        "zipf_graph_calls_total": calls,
        "zipf_graph_calls_per_1000_requests": round(per_thousand, 3),
        "initial_sync_1000_graph_requests": sync_calls,
        "mirror_hit_median_ms": round(mirror_ms, 3),
        "l1_hit_median_ms": round(l1_ms, 3),
        "l2_hit_median_ms": round(l2_ms, 3),
    }
    return lines, figures


def _rss_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _until_complete(stack: Stack) -> tuple[float, int, int, int, int]:
    """Rounds until one completes (a round pauses after 240 s): wall s, rounds, pages, Graph requests, events."""
    coordinator = await registry.get(MIRROR)
    stack.sim.clear_requests()
    started, rounds, pages, events = time.perf_counter(), 0, 0, 0
    while True:
        outcome = await coordinator.run_round()
        assert outcome.result is not None
        rounds, pages, events = rounds + 1, pages + outcome.result.pages, events + outcome.result.published
        if not outcome.result.paused:
            return time.perf_counter() - started, rounds, pages, graph_calls(stack), events


async def large_tenant(stack: Stack, tenant: int) -> tuple[list[str], dict[str, Any]]:
    await fresh_process(stack.app_env(**MIRRORED))
    store = await registry.get(MIRROR_STORE)
    await store.state()  # builds the clients before the memory baseline
    Path("/proc/self/clear_refs").write_text("5")  # noqa: ASYNC240 - resets VmHWM (peak RSS) to the current RSS
    rss_before = _rss_kib("VmRSS")
    sync_seconds, sync_rounds, sync_pages, sync_calls, sync_events = await _until_complete(stack)
    peak_growth_mib = (_rss_kib("VmHWM") - rss_before) / 1024
    sync_ops = store.ops
    users = stack.sim.users()
    assert len(users) == tenant, f"the simulator has {len(users)} users"
    for n, user in enumerate(users[:100]):
        stack.sim.update_user(user["id"], jobTitle=f"Changed {n}")
    store.ops = 0
    round_seconds, _, _, round_calls, round_events = await _until_complete(stack)
    round_ops = store.ops
    lines = [
        f"A tenant of {tenant:,} users (simulator pages of 100).",
        "",
        "| Round | wall s | rounds | Graph requests | Table operations (mirror table) | events | peak RSS growth MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| initial sync | {sync_seconds:.1f} | {sync_rounds} | {sync_calls} | {sync_ops:,} | {sync_events} "
        f"| {peak_growth_mib:.1f} |",
        f"| round after 100 changes | {round_seconds:.2f} | 1 | {round_calls} | {round_ops:,} | {round_events} | — |",
        "",
        f"The initial sync read {sync_pages} pages; a round pauses at a page boundary after 240 s and the next "
        "continues from the saved page (counted together above). Peak RSS growth: the process's peak resident "
        "memory during the sync (VmHWM, reset before it) minus its resident memory before (clients' buffers "
        "included). A round holds one page at a time; this run does not compare tenant sizes.",
    ]
    figures = {
        "tenant_users": tenant,
        "initial_sync_seconds": round(sync_seconds, 2),
        "initial_sync_rounds": sync_rounds,
        "initial_sync_graph_requests": sync_calls,
        "initial_sync_table_operations": sync_ops,
        "initial_sync_peak_rss_growth_mib": round(peak_growth_mib, 1),
        "round_100_changes_seconds": round(round_seconds, 3),
        "round_100_changes_graph_requests": round_calls,
        "round_100_changes_table_operations": round_ops,
        "round_100_changes_events": round_events,
    }
    return lines, figures


async def _closing(work: Any) -> Any:
    """Run ``work``, then close the registry's clients on this event loop (the next stack gets new ones)."""
    try:
        return await work
    finally:
        await registry.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0, help="simulator base latency per Graph request")
    parser.add_argument("--requests", type=int, default=20_000, help="requests of the Zipf workload")
    parser.add_argument("--tier-users", type=int, default=100, help="users timed per tier")
    parser.add_argument("--tenant", type=int, default=10_000, help="users of the large-tenant sync")
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()
    background = background_note()
    latency = ("--latency-ms", str(args.latency_ms))
    with running_stack("--users", str(args.tenant), "--messages-per-user", "0", *latency) as stack:
        tenant_lines, tenant_figures = asyncio.run(_closing(large_tenant(stack, args.tenant)))
    with running_stack("--users", str(USERS), "--messages-per-user", "1", *latency) as stack:
        zipf_lines, zipf_figures = asyncio.run(_closing(zipf_with_mirror(stack, args.requests, args.tier_users)))
    report = "\n".join(
        [
            f"Graph simulator base latency {args.latency_ms:g} ms.",
            "",
            *zipf_lines,
            "",
            *tenant_lines,
            "",
            f"Machine: {machine()}. {SHARED_CORES_NOTE} {background}",
        ]
    )
    print(report)
    if args.write:
        write_section("mirror", "python -m bench.mirror --write", report)
    print(json.dumps({**zipf_figures, **tenant_figures}))


if __name__ == "__main__":
    main()
