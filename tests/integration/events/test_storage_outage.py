"""Storage outages in the middle of processing, on a private Azurite that the tests stop (SIGTERM, so its
own persistence is not the variable) and restart on the same ports and data folder.

The outage is injected from inside the work it interrupts: right after the forward to ``graph-events``
succeeded (so recording it fails), or right before the forward's send (so the send fails). Counted: the
events that reach ``graph-events`` per id, and whether the invocation had to give up.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueServiceClient

from devtools.azurite import Azurite
from shared.events.bus import EventBus
from shared.events.dedupe import DedupeStore
from shared.events.dispatch import ExactlyOnceDispatcher
from shared.events.handlers import FORWARD_HANDLER, EventForwarder, ForwardingConfig
from shared.events.model import Event
from shared.events.notifications import encode_envelope
from shared.events.outbound import decode_events
from shared.events.processor import HandlersFailedError, NotificationProcessor, ProcessorConfig, ProcessResult
from shared.storage import OutageWait, Queues, Tables
from shared.wiring import STORAGE_CLIENT_OPTIONS
from tests.unit.events import samples

pytestmark = pytest.mark.integration

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EVENTS = "outage-events"


@pytest.fixture(name="private_azurite", scope="module")
def _private_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """An Azurite of this module alone, with its data on disk so a stop/start keeps it."""
    server = Azurite(location=Path(tmp_path_factory.mktemp("azurite-outage")))
    server.start()
    try:
        yield server
    finally:
        server.stop(remove_data=False)


class Outage:
    """Stops Azurite now and starts it again after ``seconds`` (in a background task)."""

    def __init__(self, azurite: Azurite) -> None:
        self.azurite = azurite
        self.restarted: asyncio.Task[None] | None = None

    async def begin(self, seconds: float) -> None:
        await asyncio.to_thread(self.azurite.stop, False)

        async def restart() -> None:
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self.azurite.start)

        self.restarted = asyncio.create_task(restart())

    async def end(self) -> None:
        if self.restarted is not None:
            await self.restarted


@pytest.fixture(name="outage")
async def _outage(private_azurite: Azurite) -> AsyncIterator[Outage]:
    outage = Outage(private_azurite)
    yield outage
    await outage.end()
    private_azurite.start()


@pytest.fixture(name="storage")
async def _storage(private_azurite: Azurite, unique_name: str) -> AsyncIterator[tuple[Tables, Queues]]:
    """Clients built as the app builds them (same retry and timeout options), behind the storage layer."""
    connection = private_azurite.connection_string
    tables = TableServiceClient.from_connection_string(
        connection, retry_total=2, retry_backoff_factor=0.1, retry_backoff_max=2, **STORAGE_CLIENT_OPTIONS
    )
    queues = QueueServiceClient.from_connection_string(
        connection, initial_backoff=0, increment_base=1, retry_total=2, random_jitter_range=0, **STORAGE_CLIENT_OPTIONS
    )
    yield Tables(tables, unique_name), Queues(queues)
    await tables.close()
    await queues.close()


def build_processor(
    storage: tuple[Tables, Queues], forward: Callable[[Event], Awaitable[None]], wait: OutageWait
) -> NotificationProcessor:
    tables, queues = storage
    bus = EventBus(default_timeout=10)
    bus.subscribe(FORWARD_HANDLER, forward, ["*"])
    dispatcher = ExactlyOnceDispatcher(bus, DedupeStore(tables), wait)
    return NotificationProcessor(dispatcher, queues, ProcessorConfig(queue=f"{EVENTS}-in"))


def forward_then_outage(
    forwarder: EventForwarder, outage: Outage, seconds: float
) -> Callable[[Event], Awaitable[None]]:
    """The real forward, then (the first time only) Storage stops for ``seconds``: the send went out,
    recording it done has to happen during the outage."""
    struck: list[bool] = []

    async def forward(event: Event) -> None:
        await forwarder(event)
        if not struck:
            struck.append(True)
            await outage.begin(seconds)

    return forward


def message(*items: object) -> str:
    return encode_envelope(RECEIVED, [json.dumps(i) for i in items])


async def forwarded_ids(queues: Queues, queue: str) -> Counter[str]:
    client = await queues.get(queue)
    ids: Counter[str] = Counter()
    while batch := [m async for m in client.receive_messages(max_messages=32, messages_per_page=32)]:
        for received in batch:
            ids.update(event["id"] for event in decode_events(received.content))
            await client.delete_message(received)
    return ids


async def test_an_outage_right_after_the_forward_is_waited_out_without_a_duplicate(
    storage: tuple[Tables, Queues], outage: Outage, unique_name: str
) -> None:
    """The forward succeeded, then Storage went away for 3 s before the marker was completed: the
    completion is retried in place, the invocation succeeds, and a redelivery finds the event done."""
    queue = f"{unique_name}-events"
    forward = forward_then_outage(EventForwarder(storage[1], ForwardingConfig(queue=queue)), outage, 3.0)
    processor = build_processor(storage, forward, OutageWait(budget_seconds=30))
    first = await processor.process(message(samples.user_change()))
    await outage.end()
    again = await processor.process(message(samples.user_change()))
    assert (first.published, first.failed, again.duplicates) == (1, 0, 1)
    assert list((await forwarded_ids(storage[1], queue)).values()) == [1]


async def test_an_outage_before_the_send_is_waited_out_and_the_event_sent_once(
    storage: tuple[Tables, Queues], outage: Outage, unique_name: str
) -> None:
    """Storage went away just before the forward's send: the send fails, the same dispatch takes its own
    claim back once Storage returns (not 'busy'), sends, and records it: one event, no redelivery."""
    queue = f"{unique_name}-events"
    forwarder = EventForwarder(storage[1], ForwardingConfig(queue=queue))
    attempts: list[bool] = []

    async def fail_storage_then_forward(event: Event) -> None:
        if not attempts:
            await outage.begin(3.0)
        attempts.append(True)
        await forwarder(event)

    processor = build_processor(storage, fail_storage_then_forward, OutageWait(budget_seconds=30))
    result = await processor.process(message(samples.user_change()))
    await outage.end()
    assert (result.published, result.failed) == (1, 0)
    assert len(attempts) >= 2  # the first send did fail
    assert list((await forwarded_ids(storage[1], queue)).values()) == [1]


async def test_an_outage_longer_than_the_budget_is_the_documented_duplicate_window(
    storage: tuple[Tables, Queues], outage: Outage, unique_name: str
) -> None:
    """Past the budget the invocation gives up (the host redelivers); the forward that went out before
    the outage was not recorded, so the redelivery sends it again: two copies with the same ``id`` —
    exactly the limit docs/reliability.md states, and why events carry a stable id."""
    queue = f"{unique_name}-events"
    forward = forward_then_outage(EventForwarder(storage[1], ForwardingConfig(queue=queue)), outage, 6.0)
    processor = build_processor(storage, forward, OutageWait(budget_seconds=1.5))
    with pytest.raises(HandlersFailedError):
        await processor.process(message(samples.user_change()))
    await outage.end()
    redelivered = await redeliver_until_done(processor, message(samples.user_change()))
    assert redelivered.published == 1
    assert list((await forwarded_ids(storage[1], queue)).values()) == [2]


async def redeliver_until_done(processor: NotificationProcessor, text: str) -> ProcessResult:
    """What the host does: deliver again (every second here) while the invocation fails; the unrecorded
    claim blocks other copies until its lease (handler timeout + margin) runs out."""
    for attempt in range(2, 30):
        try:
            return await processor.process(text, dequeue_count=attempt)
        except HandlersFailedError:
            await asyncio.sleep(1)
    raise AssertionError("still failing after 28 redeliveries")
