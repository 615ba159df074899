"""Graph change notifications delivered through an event hub (``@eventhub`` subscriptions, docs/eventhubs.md).

Batches (cardinality many) go to ``EventHubIngest``, which feeds the queue path's processors. The retry policy
is what makes a failed batch come again: without one the host checkpoints after a failure too. Five attempts
in all, as the queues' ``maxDequeueCount``; on the last one an event still failing is parked, not raised.
The hub's name is read when the app is indexed (``GRAPH_EVENTHUB_NAME``, a literal, never ``%...%``); the
connection ``GRAPH_EVENTHUB`` is identity-based (``GRAPH_EVENTHUB__fullyQualifiedNamespace``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from shared.index_time import index_time_value
from shared.invocation import run_events
from shared.wiring import EVENTHUB_INGEST, registry

if TYPE_CHECKING:
    from shared.events.eventhub import HubEvent

bp = func.Blueprint()

MAX_RETRIES = 4  # 5 attempts, as host.json's queues.maxDequeueCount


def hub_events(events: list[func.EventHubEvent]) -> list[HubEvent]:
    """The trigger's events as the feature's plain records."""
    from shared.events.eventhub import HubEvent  # on first use: keeps import function_app (indexing) short

    return [HubEvent(e.get_body(), e.enqueued_time, e.sequence_number, e.partition_key, e.offset) for e in events]


@bp.function_name("process_eventhub")
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count=str(MAX_RETRIES),
    minimum_interval="00:00:02",
    maximum_interval="00:01:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name=index_time_value("GRAPH_EVENTHUB_NAME"),
    connection="GRAPH_EVENTHUB",
    cardinality="many",
    consumer_group="$Default",
)
async def process_eventhub(events: list[func.EventHubEvent], context: func.Context) -> None:
    async def handle() -> object:
        retry = context.retry_context
        last = retry is not None and retry.max_retry_count > 0 and retry.retry_count >= retry.max_retry_count
        return await (await registry.get(EVENTHUB_INGEST)).process(hub_events(events), last_attempt=last)

    await run_events("process_eventhub", context, len(events), handle)
