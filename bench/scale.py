"""Processing rate with 1, 2 and 3 instances of the app on one Azurite, and the contention between them.

For each instance count: a backlog of notifications is acknowledged by one harness with the processor off
(so every case drains the same kind of queue), then N harness instances of the same app (one table prefix,
one host ID) start together and drain it. The rate is counted from the moment the last instance reports
Running: items published since then / seconds until all are published. From every instance's
``/api/status`` counters: Storage calls, Table/Queue answers 409/412 (another writer made or changed the
row first: contention on a shared row) and redelivered queue messages, each per 1,000 items; from
``graph-events``: distinct events and duplicate copies.

    python -m bench.scale [--count 3000] [--instances 1,2,3] [--write]

On a 2-core machine expect little gain from more instances (they, Azurite and the client share the cores);
the point is that nothing serializes on a shared row: conflicts per 1,000 items stay near zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bench._stack import (
    ROOT,
    SHARED_CORES_NOTE,
    Harness,
    Stack,
    background_note,
    running_harness,
    running_stack,
    spawn_harness,
)
from bench.report import machine, write_section
from bench.webhook import (
    E2E_PER_POST,
    EVENTS_QUEUE,
    MASTER_KEY,
    NOTIFICATIONS_QUEUE,
    PROCESSOR_OFF,
    SENDERS,
    Notifications,
    clear_queues,
    drain_events,
    post_until_acked,
    queue_count,
    register_subscription,
)

YEARLY = "0 0 0 1 1 *"
COUNTERS = ("notifications.published", "processor.items", "processor.storage_calls", "processor.storage_conflicts",
            "processor.redeliveries")  # fmt: skip


@dataclass
class Case:
    """One instance count's outcome."""

    instances: int
    count: int
    seconds: float | None  # from the last instance Running to all published (None: not within the timeout)
    published_after_start: int
    counters: dict[str, int]
    distinct: int
    duplicates: int
    poisoned: int

    @property
    def rate(self) -> float:
        return self.published_after_start / self.seconds if self.seconds else float("nan")

    def per_thousand(self, counter: str) -> float:
        items = self.counters["processor.items"]
        return self.counters[counter] / items * 1000 if items else float("nan")


def app_settings(stack: Stack) -> dict[str, str]:
    """One app's settings for every instance of a case: its own tables and host ID, no timers."""
    env = stack.app_env(
        FUNCHOST_MASTER_KEY=MASTER_KEY,
        SUBSCRIPTION_RENEWAL_SCHEDULE=YEARLY,
        MAINTENANCE_SCHEDULE=YEARLY,
        MIRROR_SCHEDULE=YEARLY,
    )
    env["AzureFunctionsWebHost__hostid"] = "bench-" + env["STORAGE_TABLE_PREFIX"]
    return env


def fill_backlog(stack: Stack, env: Mapping[str, str], count: int) -> None:
    """``count`` notifications acknowledged by one harness with the processor off (10 per POST)."""
    connection = stack.azurite.connection_string
    asyncio.run(clear_queues(connection, NOTIFICATIONS_QUEUE, EVENTS_QUEUE, NOTIFICATIONS_QUEUE + "-poison"))
    with running_harness(ROOT, {**env, **PROCESSOR_OFF}) as harness:
        url = f"{harness.base_url}/api/notifications"
        subscription = asyncio.run(register_subscription(connection, env["STORAGE_TABLE_PREFIX"], url))
        notifications = Notifications(subscription)
        bodies = [notifications.body(E2E_PER_POST) for _ in range(count // E2E_PER_POST)]
        acked, _ = asyncio.run(post_until_acked(url, bodies, min(SENDERS, len(bodies)), timeout=300))
    if acked != count:
        raise RuntimeError(f"only {acked} of {count} notifications acknowledged")


@contextlib.contextmanager
def running_instances(env: Mapping[str, str], count: int, timeout: float = 60.0) -> Iterator[list[Harness]]:
    """``count`` harnesses spawned together; yields once all report Running; all stopped on exit."""
    harnesses = [spawn_harness(ROOT, env) for _ in range(count)]
    try:
        deadline = time.monotonic() + timeout
        for harness in harnesses:
            while not _running(harness):
                if harness.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"an instance did not start:\n{harness.output()}")
                time.sleep(0.05)
        yield harnesses
    finally:
        for harness in harnesses:
            harness.stop()


def _running(harness: Harness) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        status = httpx.get(f"{harness.base_url}/admin/host/status", timeout=1.0)
        return status.status_code == 200 and status.json().get("state") == "Running"
    return False


def counters(harnesses: list[Harness]) -> dict[str, int]:
    """The processor's counters summed over the instances (each counts what its own process did)."""
    total = dict.fromkeys(COUNTERS, 0)
    for harness in harnesses:
        status = httpx.get(f"{harness.base_url}/api/status", headers={"x-functions-key": MASTER_KEY}, timeout=10)
        status.raise_for_status()
        events = status.json()["stats"]["events"]
        for name in COUNTERS:
            total[name] += int(events.get(name, {}).get("total", 0))
    return total


def run_case(stack: Stack, instances: int, count: int, timeout: float = 300.0) -> Case:
    env = app_settings(stack)
    fill_backlog(stack, env, count)
    connection = stack.azurite.connection_string
    with running_instances(env, instances) as harnesses:
        started = time.perf_counter()
        at_start = counters(harnesses)["notifications.published"]
        seconds = None
        while time.perf_counter() - started < timeout:
            if counters(harnesses)["notifications.published"] >= count:
                seconds = time.perf_counter() - started
                break
            time.sleep(0.25)
        time.sleep(1.0)  # let the last deliveries record their counts
        totals = counters(harnesses)
    distinct, duplicates, _ = asyncio.run(drain_events(connection))
    poisoned = asyncio.run(queue_count(connection, NOTIFICATIONS_QUEUE + "-poison"))
    return Case(instances, count, seconds, count - at_start, totals, distinct, duplicates, poisoned)


def report(cases: list[Case]) -> tuple[str, dict[str, Any]]:
    lines = [
        "| instances | items | processed/s | Storage calls / 1,000 items | 409/412 / 1,000 items "
        "| redelivered messages / 1,000 items | distinct events | duplicate copies | poisoned |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    figures: dict[str, Any] = {}
    for case in cases:
        n = case.instances
        lines.append(
            f"| {n} | {case.count:,} | {case.rate:,.0f} | {case.per_thousand('processor.storage_calls'):,.0f} "
            f"| {case.per_thousand('processor.storage_conflicts'):.1f} "
            f"| {case.per_thousand('processor.redeliveries'):.1f} | {case.distinct:,} | {case.duplicates} "
            f"| {case.poisoned} |"
        )
        figures[f"processed_per_s_{n}_instances"] = round(case.rate, 1)
        figures[f"conflicts_per_1000_items_{n}_instances"] = round(case.per_thousand("processor.storage_conflicts"), 2)
        figures[f"redeliveries_per_1000_items_{n}_instances"] = round(case.per_thousand("processor.redeliveries"), 2)
        figures[f"duplicate_events_{n}_instances"] = case.duplicates
    return "\n".join(lines), figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="notifications in each backlog (a multiple of 10)")
    parser.add_argument("--instances", default="1,2,3", help="instance counts, comma-separated")
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()
    if args.count % E2E_PER_POST:
        parser.error(f"--count must be a multiple of {E2E_PER_POST}")
    background = background_note()
    with running_stack() as stack:
        cases = [run_case(stack, int(n), args.count) for n in args.instances.split(",")]
    table, figures = report(cases)
    body = (
        f"{table}\n\nEach case drains a backlog of {args.count:,} notifications acknowledged beforehand "
        "(10 per POST); the rate counts from the last instance Running. "
        f"Counters are the processor's own (`/api/status`), summed over the instances.\n\n"
        f"Machine: {machine()}. {SHARED_CORES_NOTE} {background}"
    )
    print(body)
    if args.write:
        command = f"python -m bench.scale --count {args.count} --instances {args.instances} --write"
        write_section("scale", command, body)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
