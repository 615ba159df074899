"""EventHubIngest with in-memory queues and recording processors: what reaches which processor, what is
ignored, refused or parked, and when a batch must be retried."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import TransientError
from shared.events.eventhub import EventHubIngest, HubEvent, HubEventsFailedError, is_validation_item
from shared.events.notifications import parse_envelope
from tests.unit.events.fakes import FakeQueues, FakeRegistry
from tests.unit.events.samples import SECRET, SUBSCRIPTION, body, lifecycle, message_change, user_change

ENQUEUED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
VALIDATION = {
    "subscriptionId": "NA",
    "subscriptionExpirationDateTime": "NA",
    "clientState": "NA",
    "changeType": "Validation: Testing client application reachability for subscription Request-Id: 522a8e7e",
    "resource": "NA",
    "resourceData": {"@odata.type": "NA", "@odata.id": "NA", "id": "NA"},
}


class Recording:
    """A processor that keeps each envelope it was given; ``failing`` makes it raise as a handler failure does."""

    def __init__(self, failing: bool = False) -> None:
        self.envelopes: list[str] = []
        self.failing = failing

    async def process(self, body: bytes | str, dequeue_count: int = 1) -> object:
        self.envelopes.append(body if isinstance(body, str) else body.decode())
        if self.failing:
            raise TransientError("handlers left to run", service="events")
        return None

    def items(self) -> list[dict[str, Any]]:
        return [item for text in self.envelopes for item in parse_envelope(text).items]


def _ingest(changes: Recording, lifecycle_processor: Recording, queues: FakeQueues) -> EventHubIngest:
    return EventHubIngest(FakeRegistry({SUBSCRIPTION: SECRET}), changes, lifecycle_processor, queues)


def _event(data: bytes, sequence: int = 0) -> HubEvent:
    return HubEvent(data, ENQUEUED, sequence, SUBSCRIPTION, str(sequence * 100))


async def test_items_go_to_their_processor_checked_and_without_client_state() -> None:
    """A change and a lifecycle item reach their processors as envelopes received at the enqueue time; the
    validation message and an item with a wrong clientState go nowhere (counted)."""
    changes, lifecycles, queues = Recording(), Recording(), FakeQueues()
    events = [
        _event(body(VALIDATION)),
        _event(body(message_change(), lifecycle(), user_change(secret="guessed")), 1),
    ]
    result = await _ingest(changes, lifecycles, queues).process(events)

    assert (result.processed, result.validation, result.refused, result.changes, result.lifecycle) == (2, 1, 1, 1, 1)
    (envelope,) = changes.envelopes
    assert parse_envelope(envelope).received_at == ENQUEUED
    (item,) = changes.items()
    assert item["changeType"] == "created"
    assert "clientState" not in item
    assert [i["lifecycleEvent"] for i in lifecycles.items()] == ["reauthorizationRequired"]
    assert SECRET not in json.dumps(queues.sent)


async def test_a_malformed_event_is_parked_and_the_batch_proceeds() -> None:
    changes, queues = Recording(), FakeQueues()
    result = await _ingest(changes, Recording(), queues).process([_event(b"not json", 7), _event(body(user_change()))])

    assert (result.poisoned, result.processed, result.failed) == (1, 1, 0)
    (parked,) = queues.sent["graph-eventhub-poison"]
    document = json.loads(parked)
    assert "not valid JSON" in document["poisoned"]["reason"]
    (raw,) = parse_envelope(document["message"]).items
    assert raw["body"] == "not json"
    assert raw["eventhub"]["sequenceNumber"] == 7
    assert raw["eventhub"]["partitionKey"] == SUBSCRIPTION
    assert len(changes.items()) == 1


async def test_a_malformed_item_goes_to_the_processor_to_be_poisoned_there() -> None:
    """The queue path's processor poisons bad items alone (once, by marker): the hub path hands it over."""
    changes = Recording()
    await _ingest(changes, Recording(), FakeQueues()).process([_event(body({"subscriptionId": SUBSCRIPTION}))])
    assert changes.items() == [{"subscriptionId": SUBSCRIPTION}]


async def test_events_of_one_window_share_envelopes() -> None:
    """Three events enqueued within one identity window are one envelope of all their items (the processor
    batches its Storage work per envelope); an event of the next window gets its own."""
    changes = Recording()
    later = HubEvent(body(message_change(message="m4")), ENQUEUED + timedelta(minutes=5), 3, SUBSCRIPTION, "300")
    events = [_event(body(message_change(message=f"m{i}")), i) for i in range(3)]
    result = await _ingest(changes, Recording(), FakeQueues()).process([*events, later])

    assert result.processed == 4
    assert [len(parse_envelope(e).items) for e in changes.envelopes] == [3, 1]
    assert [parse_envelope(e).received_at for e in changes.envelopes] == [ENQUEUED, ENQUEUED + timedelta(minutes=5)]


async def test_a_failing_envelope_fails_the_batch_after_every_event_was_tried() -> None:
    """The change envelope fails, its window's events count as failed; the lifecycle items still ran, and the
    event of another window did too."""
    changes, lifecycles = Recording(failing=True), Recording()
    ingest = _ingest(changes, lifecycles, FakeQueues())
    later = HubEvent(body(lifecycle("missed")), ENQUEUED + timedelta(minutes=5), 2, SUBSCRIPTION, "200")
    with pytest.raises(HubEventsFailedError) as raised:
        await ingest.process([_event(body(message_change())), _event(body(lifecycle()), 1), later])
    assert (raised.value.result.failed, raised.value.result.processed) == (2, 1)
    assert len(lifecycles.envelopes) == 2


async def test_on_the_last_attempt_a_failing_event_is_parked_for_the_queue_path() -> None:
    """As the host parks a queue message after maxDequeueCount: the items, as an envelope the queue
    processor can replay, in graph-notifications-poison; the batch then succeeds."""
    queues = FakeQueues()
    ingest = _ingest(Recording(failing=True), Recording(), queues)
    result = await ingest.process([_event(body(message_change()))], last_attempt=True)

    assert (result.poisoned, result.failed) == (1, 0)
    (parked,) = queues.sent["graph-notifications-poison"]
    document = json.loads(parked)
    assert "last retry" in document["poisoned"]["reason"]
    assert parse_envelope(document["message"]).items[0]["changeType"] == "created"


async def test_a_storage_outage_while_checking_client_states_retries_the_event() -> None:
    class Down(FakeRegistry):
        async def client_states(self, subscription_ids: set[str]) -> dict[str, Any]:
            raise TransientError("storage down", service="storage")

    ingest = EventHubIngest(Down({}), Recording(), Recording(), FakeQueues())
    with pytest.raises(HubEventsFailedError):
        await ingest.process([_event(body(user_change()))])


def test_only_graphs_validation_message_counts_as_one() -> None:
    assert is_validation_item(VALIDATION)
    assert not is_validation_item({**VALIDATION, "subscriptionId": SUBSCRIPTION})
    assert not is_validation_item(message_change())
