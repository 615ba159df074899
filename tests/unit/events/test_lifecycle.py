"""Lifecycle dispatch: each documented event reaches its reaction; unknown ones are dropped, not retried."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.events.lifecycle import LifecycleFailedError, LifecycleProcessor, LoggingLifecycleReactions
from shared.events.notifications import LifecycleNotification, encode_envelope, parse_envelope
from shared.events.poison import unwrap
from tests.unit.events import samples
from tests.unit.events.fakes import FakeQueues

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def message(*items: object) -> str:
    return encode_envelope(RECEIVED, [json.dumps(i) for i in items])


class FailingReactions(LoggingLifecycleReactions):
    async def missed(self, notification: LifecycleNotification) -> None:
        raise RuntimeError("delta resync failed")


async def test_each_lifecycle_event_reaches_its_reaction() -> None:
    """reauthorizationRequired, subscriptionRemoved and missed are dispatched and counted."""
    reactions = LoggingLifecycleReactions()
    processor = LifecycleProcessor(reactions, FakeQueues())  # type: ignore[arg-type]
    names = ["reauthorizationRequired", "subscriptionRemoved", "missed"]
    result = await processor.process(message(*(samples.lifecycle(n) for n in names)), dequeue_count=1)
    assert result.handled == 3
    assert dict(reactions.counts) == dict.fromkeys(names, 1)


async def test_unknown_lifecycle_events_are_dropped_without_retry() -> None:
    """A lifecycle event we do not know is logged and dropped; the invocation succeeds."""
    reactions = LoggingLifecycleReactions()
    result = await LifecycleProcessor(reactions, FakeQueues()).process(message(samples.lifecycle("brandNewEvent")))  # type: ignore[arg-type]
    assert (result.unknown, result.failed) == (1, 0)
    assert not reactions.counts


async def test_a_failed_reaction_retries_the_message_after_the_others_ran() -> None:
    """missed fails → LifecycleFailedError, but reauthorizationRequired in the same message was handled."""
    reactions = FailingReactions()
    processor = LifecycleProcessor(reactions, FakeQueues())  # type: ignore[arg-type]
    with pytest.raises(LifecycleFailedError) as raised:
        await processor.process(message(samples.lifecycle("missed"), samples.lifecycle()))
    assert (raised.value.result.handled, raised.value.result.failed) == (1, 1)
    assert reactions.counts["reauthorizationRequired"] == 1


async def test_malformed_lifecycle_message_and_change_items_are_poisoned() -> None:
    """A non-envelope message goes to graph-lifecycle-poison; a change item in it is poisoned alone."""
    queues = FakeQueues()
    processor = LifecycleProcessor(LoggingLifecycleReactions(), queues)  # type: ignore[arg-type]
    assert (await processor.process(b"garbage")).message_poisoned
    result = await processor.process(message(samples.user_change(), samples.lifecycle()))
    assert (result.handled, result.poisoned) == (1, 1)
    garbage, item = queues.sent["graph-lifecycle-poison"]
    assert unwrap(garbage)[0] == "garbage"
    original, reason = unwrap(item)
    assert parse_envelope(original).items == [samples.user_change()]
    assert reason
    assert "notifications queue" in reason
