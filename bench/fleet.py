"""Mailbox fleets (issue 18): subscribing a 2,000-mailbox group fleet from cold, a reconcile after 20
membership changes, and 30 simulated days of renewal timer runs (every 30 minutes) on the simulator's clock.

Everything runs in-process with the app's own wiring (``shared.wiring.registry``, the subscription service
the timer uses) on Azurite and the Graph simulator, which it starts and stops itself; a small loopback
endpoint answers Graph's validation handshake for the webhook URL.

    .venv/bin/python -m bench.fleet [--mailboxes 2000] [--days 30] [--latency-ms 20] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench._stack import SHARED_CORES_NOTE, Stack, background_note, running_stack
from bench.report import machine, write_section
from bench.users_workload import closing_registry, fresh_process, graph_calls
from shared.wiring import SUBSCRIPTION_CLOCK, SUBSCRIPTIONS, registry

TIMER = timedelta(minutes=30)  # the renewal timer's default schedule


@contextlib.contextmanager
def handshake_endpoint() -> Iterator[str]:
    """A webhook base URL whose POSTs echo Graph's ``validationToken`` (and accept anything else)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            token = parse_qs(urlsplit(self.path).query).get("validationToken", [""])[0]
            body = token.encode()
            self.send_response(200 if token else 202)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api"
    finally:
        server.shutdown()


class SimulatedNow:
    """The simulator's clock as the app's subscription clock: real time plus the offset this run added."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def cold_and_changes(stack: Stack, members: list[str], spare: list[str], group: str) -> dict[str, Any]:
    service = await registry.get(SUBSCRIPTIONS)
    stack.sim.clear_requests()
    started = time.perf_counter()
    cold = await service.reconcile()
    cold_seconds, cold_calls = time.perf_counter() - started, graph_calls(stack)
    assert len(cold.created) == len(members), f"created {len(cold.created)} of {len(members)}"
    by_route = Counter(r["route"] for r in stack.sim.requests())

    for joiner in spare[:10]:
        stack.sim.add_member(group, joiner)
    for leaver in members[:10]:
        stack.sim.remove_member(group, leaver)
    stack.sim.clear_requests()
    started = time.perf_counter()
    changed = await service.reconcile()
    change_seconds, change_calls = time.perf_counter() - started, graph_calls(stack)
    assert (len(changed.created), len(changed.removed)) == (10, 10), changed
    return {
        "cold_seconds": cold_seconds,
        "cold_graph_requests": cold_calls,
        "cold_routes": by_route,
        "change_seconds": change_seconds,
        "change_graph_requests": change_calls,
        "change_routes": Counter(r["route"] for r in stack.sim.requests()),
    }


async def simulated_days(stack: Stack, clock: SimulatedNow, days: int) -> dict[str, Any]:
    """Timer runs every 30 simulated minutes: renew what is due; count renewals per run. A subscription that
    lapsed is one Graph no longer has at a run (the run recreates it: ``recreated``); at the end every
    mailbox must still have a live subscription expiring in the future."""
    service = await registry.get(SUBSCRIPTIONS)
    stack.sim.clear_requests()
    per_run: list[int] = []
    recreated = failed = 0
    started = time.perf_counter()
    for _ in range(int(days * timedelta(days=1) / TIMER)):
        stack.sim.advance_clock(TIMER.total_seconds())
        clock.offset += TIMER
        result = await service.renew_due(clock())
        per_run.append(result.renewed)
        recreated += result.recreated
        failed += result.failed
    live = stack.sim.subscriptions()
    now = clock()
    lapsed = recreated + sum(1 for s in live if datetime.fromisoformat(s["expirationDateTime"]) <= now)
    return {
        "wall_seconds": time.perf_counter() - started,
        "runs": len(per_run),
        "renewals": sum(per_run),
        "busiest_run": max(per_run),
        "lapsed": lapsed,
        "live": len(live),
        "recreated": recreated,
        "failed": failed,
        "graph_requests": graph_calls(stack),
        "routes": Counter(r["route"] for r in stack.sim.requests()),
    }


async def run(stack: Stack, mailboxes: int, days: int, webhook: str) -> tuple[list[str], dict[str, Any]]:
    enabled = [u["id"] for u in stack.sim.users() if u["accountEnabled"]]
    assert len(enabled) >= mailboxes + 10, f"only {len(enabled)} enabled users"
    members, spare = enabled[:mailboxes], enabled[mailboxes : mailboxes + 10]
    group = stack.sim.create_group(members=members, displayName="Fleet bench")["id"]
    clock = SimulatedNow()
    await fresh_process(
        stack.app_env(GRAPH_SUBSCRIPTIONS=f"mailboxes(group={group})/messages=created", WEBHOOK_BASE_URL=webhook)
    )
    registry.override(SUBSCRIPTION_CLOCK, lambda: clock)  # after the reset, which drops overrides
    first = await cold_and_changes(stack, members, spare, group)
    month = await simulated_days(stack, clock, days)
    per_mailbox_day = month["graph_requests"] / mailboxes / days
    share = month["busiest_run"] / max(month["renewals"], 1)
    lines = [
        f"A group fleet of {mailboxes:,} mailboxes (`mailboxes(group=...)/messages=created`), reconcile as the "
        "renewal timer runs it, concurrency 8.",
        "",
        "| Step | wall s | Graph requests | by route |",
        "| --- | ---: | ---: | --- |",
        f"| subscribe {mailboxes:,} from cold | {first['cold_seconds']:.1f} | {first['cold_graph_requests']:,} | "
        f"{_routes(first['cold_routes'])} |",
        f"| reconcile after 20 membership changes (10 joined, 10 left) | {first['change_seconds']:.2f} | "
        f"{first['change_graph_requests']} | {_routes(first['change_routes'])} |",
        "",
        f"{days} simulated days, a renewal run every 30 simulated minutes ({month['runs']:,} runs, "
        f"{month['wall_seconds']:.0f} s of wall time): {month['renewals']:,} renewals, the busiest run (all of its "
        f"renewals happen within the same minute) renewed {month['busiest_run']} "
        f"({100 * share:.1f}% of all renewals); lapsed subscriptions {month['lapsed']} (recreated "
        f"{month['recreated']}), failed renewals {month['failed']}, live at the end {month['live']:,}; "
        f"{month['graph_requests']:,} Graph requests "
        f"= {per_mailbox_day:.3f} per mailbox per day ({_routes(month['routes'])}).",
    ]
    figures = {
        "fleet_mailboxes": mailboxes,
        "cold_subscribe_seconds": round(first["cold_seconds"], 1),
        "cold_subscribe_graph_requests": first["cold_graph_requests"],
        "reconcile_20_changes_seconds": round(first["change_seconds"], 2),
        "reconcile_20_changes_graph_requests": first["change_graph_requests"],
        "simulated_days": days,
        "lapsed_subscriptions": month["lapsed"],
        "renewals": month["renewals"],
        "busiest_run_renewals": month["busiest_run"],
        "busiest_run_share_pct": round(100 * share, 2),
        "graph_requests_per_mailbox_per_day": round(per_mailbox_day, 4),
    }
    return lines, figures


def _routes(routes: Counter[str]) -> str:
    return ", ".join(f"{route} {count:,}" for route, count in routes.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=2_000, help="members of the fleet's group")
    parser.add_argument("--days", type=int, default=30, help="simulated days of renewal runs")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator base latency per Graph request")
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()
    background = background_note()
    users = str(int(args.mailboxes * 1.1) + 20)  # the seed disables ~5% of accounts
    simulator = ("--users", users, "--messages-per-user", "0", "--latency-ms", str(args.latency_ms))
    with running_stack(*simulator) as stack, handshake_endpoint() as webhook:
        lines, figures = asyncio.run(closing_registry(run(stack, args.mailboxes, args.days, webhook)))
    report = "\n".join(
        [
            f"Graph simulator base latency {args.latency_ms:g} ms.",
            "",
            *lines,
            "",
            f"Machine: {machine()}. {SHARED_CORES_NOTE} {background}",
        ]
    )
    print(report)
    if args.write:
        command = f"python -m bench.fleet --mailboxes {args.mailboxes} --days {args.days} --write"
        write_section("fleet", command, report)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
