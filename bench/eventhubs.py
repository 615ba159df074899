"""Processing rate of the Event Hubs path next to the webhook → queue path's backlog drain, same run.

    python -m bench.eventhubs [--count 3000] [--per-event 10] [--write]

Hub case: one harness with the hub trigger on (the stand-in namespace, docs/eventhubs.md); ``count`` distinct
``messages.created`` notifications (each its own etag) are written into the stand-in as events of
``per-event`` items, in REST batches of 20 events without a partition key (round robin over the 4
partitions, so 4 readers work at once), as fast as the client can; processed/s is timed from the first send
to the last publication (``notifications.published`` in ``/api/status``), so it is a backlog drain with the
sends overlapping the start. Queue case: ``bench.webhook``'s backlog drain (acknowledged with the processor
off, then drained by a fresh harness) with the same count. Both count the processor's Storage calls and read
``graph-events`` back at the end (distinct / duplicate event ids).

The stand-in keeps events in the harness's memory: reading a real hub (AMQP, checkpoints in blob storage) costs
the host, not the app, so this compares the app's processing of the two paths, not the services.

Prints the figures last as one JSON line; ``--write`` records them in docs/benchmarks.md (``eventhubs``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

from bench._stack import ROOT as APP_DIR
from bench._stack import SHARED_CORES_NOTE, Stack, background_note, running_harness, running_stack
from bench.report import machine, write_section
from bench.webhook import (
    EVENTS_QUEUE,
    MASTER_KEY,
    NOTIFICATIONS_QUEUE,
    EndToEnd,
    Notifications,
    clear_queues,
    register_subscription,
    run_case,
    wait_processed,
)

NAMESPACE = "bench-hub.servicebus.windows.net"
HUB = "graph-notifications"
EVENTS_PER_SEND = 20
BATCH_TYPE = "application/vnd.microsoft.servicebus.json"


async def send_events(base_url: str, bodies: list[bytes], senders: int = 8) -> None:
    """Write every body as one event, ``EVENTS_PER_SEND`` per REST batch, ``senders`` batches at a time."""
    url = f"{base_url}/_eventhubs/{NAMESPACE}/{HUB}/messages"
    batches = [bodies[i : i + EVENTS_PER_SEND] for i in range(0, len(bodies), EVENTS_PER_SEND)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def sender() -> None:
            while batches:
                batch = [{"Body": body.decode()} for body in batches.pop()]
                async with session.post(url, data=json.dumps(batch), headers={"Content-Type": BATCH_TYPE}) as r:
                    if r.status != 201:
                        raise RuntimeError(f"the stand-in answered {r.status}: {await r.text()}")

        await asyncio.gather(*(sender() for _ in range(senders)))


def hub_case(stack: Stack, count: int, per_event: int, timeout: float = 300.0) -> EndToEnd:
    connection = stack.azurite.connection_string
    env = {
        **stack.app_env(),
        "FUNCHOST_MASTER_KEY": MASTER_KEY,
        "GRAPH_EVENTHUB__fullyQualifiedNamespace": NAMESPACE,
        "GRAPH_EVENTHUB_NAME": HUB,
    }
    asyncio.run(clear_queues(connection, NOTIFICATIONS_QUEUE, EVENTS_QUEUE, NOTIFICATIONS_QUEUE + "-poison"))
    with running_harness(APP_DIR, env) as harness:
        url = f"EventHub:https://{NAMESPACE}/eventhubname/{HUB}?tenantId=contoso.com"
        notifications = Notifications(asyncio.run(register_subscription(connection, env["STORAGE_TABLE_PREFIX"], url)))
        bodies = [notifications.body(per_event) for _ in range(count // per_event)]
        started = time.perf_counter()
        asyncio.run(send_events(harness.base_url, bodies))
        sent_after = time.perf_counter() - started
        done, counts = asyncio.run(wait_processed(harness.base_url, connection, count, started + timeout))
    return EndToEnd(count, sent_after, 0, done - started if done else None, *counts)


def row(name: str, case: EndToEnd) -> str:
    done = case.processed_after
    rate = f"{case.count / done:,.0f}" if done else "—"
    total = f"{done:.1f}" if done else f"not done ({case.published:,} published)"
    cpu = ", ".join(f"{role} {case.cpu.by_role.get(role, 0.0):.1f}" for role in ("client", "harness", "Azurite"))
    return (
        f"| {name} | {case.count:,} | {case.acked_after:.2f} | {total} | {rate} | {case.calls_per_item:.3f} "
        f"| {case.distinct_events:,} / {case.duplicate_events} | {case.poisoned} | {cpu} |"
    )


def report(hub: EndToEnd, queue: EndToEnd, per_event: int, background: str) -> str:
    return "\n".join(
        [
            f"Processing the same backlog through each path: {hub.count:,} distinct `messages.created` "
            f"notifications. Hub: {per_event} per event, written into the harness's stand-in hub (4 partitions, "
            "round robin) in REST batches of 20 events; the `process_eventhub` trigger, up to 100 events per "
            "invocation and partition. Queue: 10 per POST acknowledged with the processor off, then drained "
            "by a fresh harness. Timed to the last publication; Storage calls are the processor's own.",
            "",
            "| path | notifications | written / acked after s | all processed after s | processed/s "
            "| Storage calls per item | graph-events distinct / duplicate | poison | CPU s (client, harness, "
            "Azurite) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            row("event hub (stand-in)", hub),
            row("webhook → queue (backlog)", queue),
            "",
            f"Machine: {machine()}. {SHARED_CORES_NOTE} {background} Figures were taken on a shared, loaded 2-core "
            "machine: other engineers' work ran at the same time, so they vary from run to run.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="notifications per path")
    parser.add_argument("--per-event", type=int, default=10, help="notifications per hub event")
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()
    with running_stack() as stack:
        background = background_note()
        hub = hub_case(stack, args.count, args.per_event)
        queue = run_case(stack, args.count, backlog=True)
    text = report(hub, queue, args.per_event, background)
    print(text)
    if args.write:
        command = f"python -m bench.eventhubs --count {args.count} --per-event {args.per_event} --write"
        write_section("eventhubs", command, text)
    figures: dict[str, Any] = {
        "notifications_per_path": args.count,
        "hub_notifications_per_event": args.per_event,
        "hub_processed_per_s": round(hub.processed_per_s or 0.0, 1),
        "hub_storage_calls_per_item": round(hub.calls_per_item, 4),
        "hub_duplicate_events": hub.duplicate_events,
        "hub_distinct_events": hub.distinct_events,
        "queue_backlog_processed_per_s": round(queue.processed_per_s or 0.0, 1),
        "queue_backlog_storage_calls_per_item": round(queue.calls_per_item, 4),
        "queue_duplicate_events": queue.duplicate_events,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
