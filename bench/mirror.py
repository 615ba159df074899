"""Directory mirror: the cost of an initial sync of a large tenant and of a round after 100 changes (the Zipf
workload on a mirrored directory, with its initial sync counted, is a section of ``bench.api``).

Everything runs in-process with the app's own wiring (``shared.wiring.registry``) on Azurite and the Graph
simulator, which it starts and stops itself.

    .venv/bin/python -m bench.mirror [--latency-ms 50] [--tenant 10000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench._stack import SHARED_CORES_NOTE, Stack, background_note, running_stack
from bench.api import MIRRORED
from bench.report import machine, write_section
from bench.users_workload import closing_registry, fresh_process, graph_calls
from shared.wiring import registry
from shared.wiring_mirror import MIRROR, MIRROR_STORE


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0, help="simulator base latency per Graph request")
    parser.add_argument("--tenant", type=int, default=10_000, help="users of the large-tenant sync")
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()
    background = background_note()
    latency = ("--latency-ms", str(args.latency_ms))
    with running_stack("--users", str(args.tenant), "--messages-per-user", "0", *latency) as stack:
        tenant_lines, tenant_figures = asyncio.run(closing_registry(large_tenant(stack, args.tenant)))
    report = "\n".join(
        [
            f"Graph simulator base latency {args.latency_ms:g} ms.",
            "",
            *tenant_lines,
            "",
            f"Machine: {machine()}. {SHARED_CORES_NOTE} {background}",
        ]
    )
    print(report)
    if args.write:
        write_section("mirror", "python -m bench.mirror --write", report)
    print(json.dumps(tenant_figures))


if __name__ == "__main__":
    main()
