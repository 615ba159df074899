"""A burst to the webhook while the processor works through a backlog is acknowledged fast.

The figures (ack p99 at a sustained offered rate, loop lag) belong to ``bench/webhook.py``; this test keeps
the mechanism honest: the queue processor shares the event loop with the webhook, and without the
background gate (``shared/background.py``) such a burst waited seconds behind processing and got 503s.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import httpx

from devtools.graphsim.client import SimControl
from shared.events.notifications import encode_envelope
from tests.e2e.conftest import RunningApp
from tests.e2e.pipeline import queue_length, send_to_queue, subscribe
from tests.fixtures.graphsim import GraphSimServer
from tests.waiting import wait_until

BACKLOG_MESSAGES = 20
ITEMS_PER_MESSAGE = 100
BURST_POSTS = 40
ITEMS_PER_POST = 10
# Graph counts a delivery as slow above 3 s; the benchmark's target is a 250 ms p99 at a steady rate. Here 40
# POSTs arrive at once on a 2-core machine while a message of 100 items is mid-flight (its Table transactions
# are single ~100 ms steps on the loop that a POST cannot overtake). Measured on the development machine: with
# the gate the slowest answer took 0.8-1.14 s; without it 1.8-1.9 s (batched processor) or every POST got a
# 503 (before batching). The bound sits between the two.
ACK_BOUND_SECONDS = 1.5


def message_items(subscription_id: str, client_state: str, run: str, count: int) -> list[dict[str, object]]:
    """``count`` distinct messages.created notifications (own etags: the processor keeps every one)."""
    user = str(uuid.uuid4())
    items: list[dict[str, object]] = []
    for n in range(count):
        message = f"AAMk{run}{n:06d}="
        resource = f"Users/{user}/Messages/{message}"
        items.append(
            {
                "subscriptionId": subscription_id,
                "clientState": client_state,
                "changeType": "created",
                "resource": resource,
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Message",
                    "@odata.id": resource,
                    "@odata.etag": f'W/"{run}{n:06d}"',
                    "id": message,
                },
                "tenantId": "00000000-0000-0000-0000-0000000000aa",
            }
        )
    return items


async def burst(url: str, bodies: list[bytes]) -> list[tuple[int, float]]:
    """POST every body at once; each answer's status and seconds."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=len(bodies))) as client:

        async def post(body: bytes) -> tuple[int, float]:
            started = time.perf_counter()
            response = await client.post(url, content=body, headers={"Content-Type": "application/json"})
            return response.status_code, time.perf_counter() - started

        return list(await asyncio.gather(*(post(body) for body in bodies)))


def test_a_burst_during_heavy_processing_is_acknowledged_within_the_bound(
    app: RunningApp, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    user_resource = f"users/{graphsim.users()[0]['id']}/messages"
    subscription_id, client_state = subscribe(app, graphsim_server.base_url, user_resource, "created")
    now = datetime.now(UTC)
    for m in range(BACKLOG_MESSAGES):
        items = message_items(subscription_id, client_state, f"b{m:03d}", ITEMS_PER_MESSAGE)
        send_to_queue(app, "graph-notifications", encode_envelope(now, [json.dumps(i) for i in items]))
    deadline = time.monotonic() + 60
    while queue_length(app, "graph-events") == 0:  # the processor is at work on the backlog
        assert time.monotonic() < deadline, "the processor never started on the backlog"
        time.sleep(0.2)
    forwarded_before = queue_length(app, "graph-events")
    assert queue_length(app, "graph-notifications") > 0, "the backlog was gone before the burst"

    bodies = [
        json.dumps({"value": message_items(subscription_id, client_state, f"p{p:03d}", ITEMS_PER_POST)}).encode()
        for p in range(BURST_POSTS)
    ]
    answers = asyncio.run(burst(f"{app.host.base_url}/api/notifications", bodies))

    assert [status for status, _ in answers] == [202] * BURST_POSTS
    slowest = max(seconds for _, seconds in answers)
    assert slowest <= ACK_BOUND_SECONDS, f"slowest acknowledgement took {slowest:.2f} s"
    # Processing goes on (it yields, it does not stop).
    assert wait_until(lambda: queue_length(app, "graph-events") > forwarded_before, timeout=60)
