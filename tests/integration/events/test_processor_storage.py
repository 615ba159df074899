"""The queue processor on Azurite: exactly-once handler effects, retries of failed handlers only, poison."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from shared.events.bus import EventBus
from shared.events.dedupe import DedupeConfig, DedupeStore
from shared.events.dispatch import ExactlyOnceDispatcher
from shared.events.handlers import EventForwarder, ForwardingConfig, register_builtin_handlers
from shared.events.model import Event
from shared.events.notifications import encode_envelope, parse_envelope
from shared.events.outbound import decode_events
from shared.events.poison import peek_poison
from shared.events.processor import HandlersFailedError, NotificationProcessor, ProcessorConfig
from shared.storage import Queues, Tables
from tests.integration.events.conftest import QueueNames, drain
from tests.unit.events import samples

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def message(*items: object) -> str:
    return encode_envelope(RECEIVED, [json.dumps(i) for i in items])


class Pipeline:
    """Processor + bus + markers with counting handlers ``a`` and ``b``; ``b`` fails while ``failures`` > 0."""

    def __init__(self, tables: Tables, queues: Queues, names: QueueNames) -> None:
        self.calls: Counter[str] = Counter()
        self.failures = 0
        self.bus = EventBus(default_timeout=2)
        self.bus.subscribe("a", self._a, ["*"])
        self.bus.subscribe("b", self._b, ["users.*"])
        self.dedupe = DedupeStore(tables)
        self.processor = NotificationProcessor(
            ExactlyOnceDispatcher(self.bus, self.dedupe), queues, ProcessorConfig(queue=names.notifications)
        )

    async def _a(self, event: Event) -> None:
        self.calls["a"] += 1

    async def _b(self, event: Event) -> None:
        self.calls["b"] += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("downstream is down")


@pytest.fixture(name="pipeline")
def _pipeline(tables: Tables, queues: Queues, names: QueueNames) -> Pipeline:
    return Pipeline(tables, queues, names)


async def test_the_same_notification_twice_runs_handlers_once(pipeline: Pipeline) -> None:
    """A redelivered notification (Graph retry, second queue message) is a duplicate with no effects."""
    first = await pipeline.processor.process(message(samples.user_change()), dequeue_count=1)
    again = await pipeline.processor.process(message(samples.user_change()), dequeue_count=1)
    assert (first.published, again.duplicates) == (1, 1)
    assert pipeline.calls == {"a": 1, "b": 1}


async def test_concurrent_copies_of_a_notification_run_handlers_once(pipeline: Pipeline) -> None:
    """Two copies processed at the same moment: the claim lets one run; the other retries, then is a duplicate."""
    outcomes = await asyncio.gather(
        *(pipeline.processor.process(message(samples.user_change())) for _ in range(2)), return_exceptions=True
    )
    retried = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, HandlersFailedError) for o in retried)
    if retried:
        assert (await pipeline.processor.process(message(samples.user_change()))).duplicates == 1
    assert pipeline.calls == {"a": 1, "b": 1}


async def test_a_handler_failing_twice_is_retried_alone(pipeline: Pipeline) -> None:
    """b fails on two deliveries and succeeds on the third; a ran exactly once in total."""
    pipeline.failures = 2
    text = message(samples.user_change(), samples.message_change())
    for attempt in (1, 2):
        with pytest.raises(HandlersFailedError) as raised:
            await pipeline.processor.process(text, dequeue_count=attempt)
        assert raised.value.result.failed == 1
    result = await pipeline.processor.process(text, dequeue_count=3)
    assert (result.published, result.duplicates, result.failed) == (1, 1, 0)
    assert pipeline.calls == {"a": 2, "b": 3}  # a: once per item (user + message); b: users only, 3 tries


async def test_malformed_message_goes_to_poison_with_its_reason(
    pipeline: Pipeline, queues: Queues, names: QueueNames
) -> None:
    """A message that is not our envelope is parked by the processor itself; the invocation succeeds."""
    result = await pipeline.processor.process(b"{not json", dequeue_count=1)
    assert result.message_poisoned
    (parked,) = await peek_poison(queues, names.notifications)
    assert parked.original == "{not json"
    assert parked.reason
    assert "not valid JSON" in parked.reason


async def test_a_bad_item_is_poisoned_alone_and_its_neighbour_is_processed(
    pipeline: Pipeline, queues: Queues, names: QueueNames
) -> None:
    """One item with a wrong type is poisoned as a one-item message; the good item runs its handlers."""
    bad = {**samples.user_change(), "changeType": 42}
    result = await pipeline.processor.process(message(bad, samples.user_change()), dequeue_count=1)
    assert (result.published, result.poisoned) == (1, 1)
    (parked,) = await peek_poison(queues, names.notifications)
    assert parse_envelope(parked.original).items == [bad]
    assert pipeline.calls == {"a": 1, "b": 1}


async def test_forwarding_writes_one_event_to_graph_events(tables: Tables, queues: Queues, names: QueueNames) -> None:
    """Processed twice, a notification still yields exactly one forwarded event, named users.updated."""
    bus = EventBus()
    register_builtin_handlers(bus, cache=None, forwarder=EventForwarder(queues, ForwardingConfig(queue=names.events)))
    processor = NotificationProcessor(
        ExactlyOnceDispatcher(bus, DedupeStore(tables)), queues, ProcessorConfig(queue=names.notifications)
    )
    for _ in range(2):
        await processor.process(message(samples.user_change()))
    (text,) = await drain(await queues.get(names.events))
    (event,) = decode_events(text)
    assert (event["type"], event["user_id"], event["source"]) == ("users.updated", samples.USER, "notification")


async def test_an_abandoned_claim_is_taken_over_after_its_lease(tables: Tables) -> None:
    """A worker that died mid-handler blocks others only until its lease runs out."""
    now = [RECEIVED]
    store = DedupeStore(tables, DedupeConfig(lease_margin_seconds=0), now=lambda: now[0])
    assert (await store.claim("id1", {"h": 10}))["h"].state == "acquired"
    assert (await store.claim("id1", {"h": 10}))["h"].state == "busy"
    now[0] += timedelta(seconds=11)
    taken = (await store.claim("id1", {"h": 10}))["h"]
    assert taken.state == "acquired"
    await store.complete([taken])
    assert (await store.claim("id1", {"h": 10}))["h"].state == "done"
    assert await store.completed("id1") == {"h"}


async def test_a_partial_redelivery_claims_only_the_handlers_left(tables: Tables) -> None:
    """With h1 done and h2 released after a failure, the next claim says done for h1 and acquires h2."""
    store = DedupeStore(tables)
    first = await store.claim("id1", {"h1": 5, "h2": 5})
    await store.complete([first["h1"]])
    await store.release(first["h2"])
    again = await store.claim("id1", {"h1": 5, "h2": 5})
    assert {h: c.state for h, c in again.items()} == {"h1": "done", "h2": "acquired"}


async def test_expired_markers_count_as_absent_and_are_swept(tables: Tables) -> None:
    """After the TTL a done marker no longer blocks, and sweep deletes it."""
    now = [RECEIVED]
    store = DedupeStore(tables, DedupeConfig(ttl=timedelta(hours=1)), now=lambda: now[0])
    for identity in ("id1", "id2"):
        await store.complete((await store.claim(identity, {"h": 1})).values())
    now[0] += timedelta(hours=2)
    assert await store.completed("id1") == set()
    assert await store.sweep() == 2
    assert (await store.claim("id1", {"h": 1}))["h"].state == "acquired"


async def test_idempotent_handlers_run_on_every_delivery_once_handlers_once(
    tables: Tables, queues: Queues, names: QueueNames
) -> None:
    """A handler registered with once=False (cache invalidation) runs for each copy of a notification, so an
    etag-less change inside the dedupe window still drops the cache; once-handlers (forwarding) run once."""
    pipeline = Pipeline(tables, queues, names)
    invalidations: list[str] = []

    async def invalidate(event: Event) -> None:
        invalidations.append(event.id)

    pipeline.bus.subscribe("invalidate", invalidate, ["users.*"], once=False)
    first = await pipeline.processor.process(message(samples.user_change()), dequeue_count=1)
    again = await pipeline.processor.process(message(samples.user_change()), dequeue_count=1)
    assert (first.published, again.duplicates) == (1, 1)
    assert pipeline.calls == {"a": 1, "b": 1}
    assert len(invalidations) == 2


async def test_sweep_deletes_the_expired_markers_of_many_events(tables: Tables) -> None:
    """Expired markers of 30 events (three handlers each, deleted per event in one transaction) are all
    deleted, and a second sweep finds nothing left."""
    now = [RECEIVED]
    store = DedupeStore(tables, DedupeConfig(ttl=timedelta(hours=1)), now=lambda: now[0])
    for n in range(30):
        await store.complete((await store.claim(f"event-{n}", {"h1": 1, "h2": 1, "h3": 1})).values())
    now[0] += timedelta(hours=2)
    assert await store.sweep() == 90
    assert await store.sweep() == 0
