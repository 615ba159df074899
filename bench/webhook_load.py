"""Offered load on the webhook while the queue processor works: what Graph sees in production.

A closed loop of senders (``bench.webhook``'s ack cases) slows down when the app does, so it cannot show
what a steady stream of Graph deliveries meets. Here POSTs leave on a fixed schedule (``rate`` notifications
per second, ``per_post`` per POST) whatever the app's answers take, and each latency is counted from the
moment the POST was *due*, so a stalled client or app cannot hide its own queueing (no coordinated
omission). The processor runs in the same harness process, as it does on an Azure instance.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import httpx

from bench._stack import CpuSnapshot, CpuUsage, median, percentile

# What the app logs when one of its own timeouts fires: a bus handler's, or a Storage call's (persist).
TIMEOUT_LINE = re.compile(r"timed out after|failed: TimeoutError")


@dataclass
class LoadRun:
    """One offered-load case: the due-time latencies of the 202s and everything that was not a 202."""

    label: str
    rate: float
    per_post: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # seconds into the case each 202's POST was due
    statuses: dict[str, int] = field(default_factory=dict)  # non-202 answers by status (or error name)
    client_lag_ms: list[float] = field(default_factory=list)  # how late the client sent each POST
    loop_lag: dict[str, Any] = field(default_factory=dict)  # the app's event-loop lag window (/api/status)
    accept_ms: dict[str, Any] = field(default_factory=dict)  # the app's own accept (validate + persist) time
    timeouts_logged: int = 0  # the app's own timeout lines during the case
    processed: int = 0  # items the processor finished during the case (published + duplicate)
    cpu: CpuUsage = field(default_factory=lambda: CpuUsage({}, float("nan")))
    events: EventArrivals | None = None  # graph-events as a consumer saw them (processor-running cases)

    def cpu_note(self) -> str:
        used = ", ".join(f"{role} {seconds:.1f}" for role, seconds in sorted(self.cpu.by_role.items()))
        return (
            f"{self.label} at {self.rate:,.0f}/s: CPU s {used}; machine busy {self.cpu.machine_busy:.0%}; "
            f"ack p99 per 5 s: {self.p99_by_window()} ms"
        )

    @property
    def non_202(self) -> int:
        return sum(self.statuses.values())

    def p99_by_window(self, seconds: float = 5.0) -> list[float]:
        """Ack p99 per ``seconds`` of the case (by due time): a start-up transient shows in the first."""
        windows: dict[int, list[float]] = {}
        for at, latency in zip(self.sent_at, self.latencies_ms, strict=True):
            windows.setdefault(int(at // seconds), []).append(latency)
        return [round(percentile(windows[k], 99)) for k in sorted(windows)]

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def row(self) -> str:
        lag = {key: float(self.loop_lag.get(key, float("nan"))) for key in ("p50", "p99", "max")}
        lag_cell = f"{lag['p50']:.1f} / {lag['p99']:.1f} / {lag['max']:.0f}"
        return (
            f"| {self.label} | {self.rate:,.0f} | {len(self.latencies_ms):,} | {self.non_202} "
            f"| {median(self.latencies_ms):.0f} | {self.p99_ms:.0f} | {max(self.latencies_ms, default=0):.0f} "
            f"| {lag_cell} | {float(self.accept_ms.get('p99', float('nan'))):.0f} | {self.timeouts_logged} "
            f"| {self.processed:,} | {percentile(self.client_lag_ms, 99):.0f} |"
        )


@dataclass
class EventArrivals:
    """What a downstream consumer of ``graph-events`` saw: each event's notification-to-event latency
    (its arrival at the consumer minus the webhook's ``received_at`` stamp, both wall clock on one machine)."""

    latencies_ms: list[float] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # seconds into the case each event was received
    duplicates: int = 0
    drain_seconds: float = 0.0  # after the last POST, until every acknowledged item had arrived (or gave up)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def p99_by_window(self, seconds: float = 5.0) -> list[float]:
        """Latency p99 per ``seconds`` of the case, by when the webhook received the notification."""
        windows: dict[int, list[float]] = {}
        for at, latency in zip(self.received_at, self.latencies_ms, strict=True):
            windows.setdefault(int(at // seconds), []).append(latency)
        return [round(percentile(windows[k], 99)) for k in sorted(windows)]


async def consume_events(
    connection: str, queue_name: str, case_started: float, expected: Callable[[], int | None], give_up_s: float
) -> EventArrivals:
    """Drain ``queue_name`` as a consumer would (receive 32, delete) until ``expected()`` items have arrived
    (``None`` while the load still runs), or nothing new came for ``give_up_s``; latency per event.
    Events of items received before ``case_started`` (a warm-up's) are read and not counted."""
    from azure.storage.queue import TextBase64DecodePolicy
    from azure.storage.queue.aio import QueueClient

    from shared.events.outbound import decode_events

    arrivals, seen = EventArrivals(), set[str]()
    policy = TextBase64DecodePolicy()
    last_progress = time.monotonic()
    load_ended: float | None = None
    async with QueueClient.from_connection_string(connection, queue_name, message_decode_policy=policy) as queue:
        while True:
            target = expected()
            if target is not None:
                load_ended = load_ended or time.monotonic()
                if len(seen) >= target or time.monotonic() - last_progress > give_up_s:
                    break
            batch = [m async for m in queue.receive_messages(max_messages=32, messages_per_page=32)]
            if not batch:
                await asyncio.sleep(0.05)
                continue
            now = time.time()
            for message in batch:
                for event in decode_events(message.content):
                    received = datetime.fromisoformat(event["received_at"]).timestamp()
                    if received < case_started:
                        continue  # the warm-up's, acknowledged before the case
                    if event["id"] in seen:
                        arrivals.duplicates += 1
                        continue
                    seen.add(event["id"])
                    arrivals.latencies_ms.append((now - received) * 1000)
                    arrivals.received_at.append(received - case_started)
            last_progress = time.monotonic()
            await asyncio.gather(*(queue.delete_message(m) for m in batch))
    arrivals.drain_seconds = time.monotonic() - load_ended if load_ended else 0.0
    return arrivals


HEADER = [
    "| case | offered notifications/s | 202s | non-202 | ack p50 ms | ack p99 ms | ack max ms "
    "| loop lag p50 / p99 / max ms | app accept p99 ms | timeouts logged | items processed | client send lag p99 ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]


async def offered_load(url: str, bodies: list[bytes], run: LoadRun, max_in_flight: int = 2000) -> LoadRun:
    """POST ``bodies`` on schedule (``run.rate / run.per_post`` per second); fill ``run``'s answers."""
    interval = run.per_post / run.rate
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(body: bytes, due: float) -> None:
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                run.statuses[type(error).__name__] = run.statuses.get(type(error).__name__, 0) + 1
                return
            if status == 202:
                run.latencies_ms.append((time.perf_counter() - due) * 1000)
                run.sent_at.append(due - start)
            else:
                run.statuses[str(status)] = run.statuses.get(str(status), 0) + 1

        tasks: list[asyncio.Task[None]] = []
        cpu_before = CpuSnapshot.take()
        start = time.perf_counter()
        for index, body in enumerate(bodies):
            due = start + index * interval
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            run.client_lag_ms.append(max(0.0, time.perf_counter() - due) * 1000)
            tasks.append(asyncio.create_task(post(body, due)))
        await asyncio.gather(*tasks)
        run.cpu = CpuSnapshot.take().since(cpu_before)
    return run


async def offered_load_consumed(
    url: str, bodies: list[bytes], run: LoadRun, connection: str, events_queue: str, give_up_s: float = 120.0
) -> LoadRun:
    """``offered_load`` while a consumer drains ``events_queue``; after the last POST the consumer goes on
    until every acknowledged item's event has arrived, so a backlog left behind shows in the latencies."""
    acked: int | None = None
    started = time.time()
    consumer = asyncio.create_task(consume_events(connection, events_queue, started, lambda: acked, give_up_s))
    try:
        await offered_load(url, bodies, run)
    except BaseException:
        consumer.cancel()
        raise
    acked = len(run.latencies_ms) * run.per_post
    run.events = await consumer
    return run


def app_status(base_url: str, master_key: str) -> dict[str, Any]:
    """The app's ``/api/status`` (admin): its measurement window among other things."""
    response = httpx.get(f"{base_url}/api/status", headers={"x-functions-key": master_key}, timeout=30.0)
    response.raise_for_status()
    return dict(response.json())


def distribution(status: dict[str, Any], name: str) -> dict[str, Any]:
    """One sample series of the status page's window (p50, p99, max, ...; {} when never recorded)."""
    return dict(status.get("stats", {}).get("distributions", {}).get(name, {}))


def event_total(status: dict[str, Any], name: str) -> int:
    """How many ``name`` events the status page's window counted (its last five minutes)."""
    return int(status.get("stats", {}).get("events", {}).get(name, {}).get("total", 0))


def processed_items(status: dict[str, Any]) -> int:
    """Items the processor finished (published or found duplicate) within the window."""
    return event_total(status, "notifications.published") + event_total(status, "notifications.duplicate")


def timeout_lines(log_text: str) -> int:
    return len(TIMEOUT_LINE.findall(log_text))


def answers_note(runs: list[LoadRun]) -> str:
    """What the non-202 answers were, per case (status code or client error)."""
    parts = [f"{run.label} at {run.rate:,.0f}/s: {run.statuses}" for run in runs if run.statuses]
    cpu = "; ".join(run.cpu_note() for run in runs)
    return "Non-202 answers: " + ("; ".join(parts) if parts else "none") + f". CPU per process: {cpu}."


EVENTS_HEADER = [
    "| case | offered notifications/s | items acked | events arrived | duplicates | latency p50 ms "
    "| latency p99 ms | latency max ms | drain after last POST s | latency p99 per 5 s (by receipt) ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
]


def events_rows(runs: list[LoadRun]) -> list[str]:
    """Notification-to-event latency as the consumer saw it, one row per processor-running case."""
    rows = []
    for run in runs:
        if run.events is None:
            continue
        events = run.events
        rows.append(
            f"| {run.label} | {run.rate:,.0f} | {len(run.latencies_ms) * run.per_post:,} "
            f"| {len(events.latencies_ms):,} | {events.duplicates} | {median(events.latencies_ms):.0f} "
            f"| {events.p99_ms:.0f} | {max(events.latencies_ms, default=0):.0f} | {events.drain_seconds:.1f} "
            f"| {events.p99_by_window()} |"
        )
    return rows


def json_figures(runs: list[LoadRun]) -> dict[str, float | int]:
    """The figures the issues ask for, keyed by offered rate."""
    figures: dict[str, float | int] = {}
    for run in runs:
        key = f"{run.rate:.0f}"
        if run.events is not None:
            figures[f"event_latency_p99_ms_at_{key}"] = round(run.events.p99_ms, 1)
            figures[f"events_missing_at_{key}"] = len(run.latencies_ms) * run.per_post - len(run.events.latencies_ms)
            figures[f"event_duplicates_at_{key}"] = run.events.duplicates
        figures[f"ack_p99_ms_with_processing_at_{key}"] = round(run.p99_ms, 1)
        figures[f"non_202_with_processing_at_{key}"] = run.non_202
        figures[f"loop_lag_p99_ms_at_{key}"] = round(float(run.loop_lag.get("p99", float("nan"))), 1)
        figures[f"timeouts_logged_at_{key}"] = run.timeouts_logged
    return figures


def describe(runs: list[LoadRun]) -> str:
    return json.dumps(json_figures(runs))
