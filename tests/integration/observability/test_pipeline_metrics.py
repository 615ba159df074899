"""Notification processing measured on Azurite: outcomes per item and the processing time per message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueServiceClient

from shared import metrics
from shared.events.bus import EventBus
from shared.events.dedupe import DedupeStore
from shared.events.dispatch import ExactlyOnceDispatcher
from shared.events.model import Event
from shared.events.notifications import encode_envelope
from shared.events.processor import NotificationProcessor, ProcessorConfig
from shared.storage import Queues, Tables
from tests.unit.events import samples
from tests.unit.observability.otel import Recorded

pytestmark = pytest.mark.integration


@pytest.fixture(name="processor")
async def _processor(storage_connection_string: str, unique_name: str) -> AsyncIterator[NotificationProcessor]:
    """A processor with one no-op handler, on this test's own tables and queue."""
    tables_client = TableServiceClient.from_connection_string(storage_connection_string)
    queues_client = QueueServiceClient.from_connection_string(storage_connection_string)
    bus = EventBus()

    async def handled(event: Event) -> None:
        return None

    bus.subscribe("noop", handled, ["*"])
    dispatcher = ExactlyOnceDispatcher(bus, DedupeStore(Tables(tables_client, unique_name)))
    yield NotificationProcessor(dispatcher, Queues(queues_client), ProcessorConfig(queue=f"{unique_name}-n"))
    await tables_client.close()
    await queues_client.close()


async def test_processed_notification_is_counted_and_timed(otel: Recorded, processor: NotificationProcessor) -> None:
    """A message with two items, one of them malformed: one ``published``, one ``poisoned``, one process span
    and one processing-time sample; a redelivery of the good item counts as ``duplicate``."""
    received = datetime.now(UTC)
    good = json.dumps(samples.user_change(secret=None))
    await processor.process(encode_envelope(received, [good, json.dumps({"nonsense": True})]))
    await processor.process(encode_envelope(received, [good]))
    assert otel.value(metrics.NOTIFICATIONS, stage="published") == 1
    assert otel.value(metrics.NOTIFICATIONS, stage="poisoned") == 1
    assert otel.value(metrics.NOTIFICATIONS, stage="duplicate") == 1
    assert otel.value(metrics.NOTIFICATION_PROCESS_DURATION) == 2
    assert otel.span_names().count("notifications.process") == 2
