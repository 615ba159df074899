"""Messages keep their etag identity (the directory mirror does not touch them): through the real processor,
markers and forwarder on Azurite, two versions of one message are two events and a redelivered version none."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.events.bus import EventBus
from shared.events.dedupe import DedupeStore
from shared.events.dispatch import ExactlyOnceDispatcher
from shared.events.handlers import EventForwarder, ForwardingConfig, register_builtin_handlers
from shared.events.notifications import encode_envelope
from shared.events.outbound import decode_events
from shared.events.processor import NotificationProcessor, ProcessorConfig
from shared.storage import Queues, Tables
from tests.integration.events.conftest import QueueNames, drain
from tests.unit.events import samples

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


async def test_two_etags_are_two_events_and_a_redelivered_etag_is_none(
    tables: Tables, queues: Queues, names: QueueNames
) -> None:
    bus = EventBus(default_timeout=5)
    register_builtin_handlers(bus, cache=None, forwarder=EventForwarder(queues, ForwardingConfig(queue=names.events)))
    processor = NotificationProcessor(
        ExactlyOnceDispatcher(bus, DedupeStore(tables)), queues, ProcessorConfig(queue=names.notifications)
    )
    first, second = samples.message_change("updated", etag='W/"1"'), samples.message_change("updated", etag='W/"2"')

    for item in (first, first, second, first, second):  # each version delivered more than once
        await processor.process(encode_envelope(RECEIVED, [json.dumps(item)]), dequeue_count=1)

    events = [event for text in await drain(await queues.get(names.events)) for event in decode_events(text)]
    assert [e["type"] for e in events] == ["messages.updated", "messages.updated"]
    assert len({e["id"] for e in events}) == 2
