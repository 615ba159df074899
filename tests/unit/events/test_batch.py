"""The batch skeleton: each processor's result counts its own outcomes; a message is dispatched in steps only
while webhook POSTs are being answered."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import cast

from shared.background import BackgroundGate, GateConfig
from shared.events.dispatch import DispatchResult, ExactlyOnceDispatcher
from shared.events.lifecycle import LifecycleResult
from shared.events.model import Event
from shared.events.notifications import encode_envelope
from shared.events.processor import NotificationProcessor, ProcessResult
from shared.storage import Queues
from tests.unit.events.fakes import FakeQueues
from tests.unit.events.samples import message_change


def test_results_count_their_own_outcomes_and_the_shared_ones() -> None:
    outcomes = Counter({"published": 2, "duplicate": 1, "poisoned": 1, "failed": 1, "handled": 9})
    assert ProcessResult.tally(5, outcomes) == ProcessResult(items=5, published=2, duplicates=1, poisoned=1, failed=1)
    lifecycle = Counter({"handled": 1, "unknown": 2, "poisoned": 1, "published": 9})
    assert LifecycleResult.tally(4, lifecycle) == LifecycleResult(items=4, handled=1, unknown=2, poisoned=1)


class RecordingDispatcher:
    """Answers every event as published; records the size of each batch it was given."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def dispatch_many(self, events: list[Event]) -> list[DispatchResult]:
        self.batches.append(len(events))
        return [DispatchResult(event, (), frozenset(), frozenset()) for event in events]


async def test_a_message_is_dispatched_whole_unless_webhook_posts_are_being_answered() -> None:
    gate = BackgroundGate(GateConfig(max_slots=4))
    dispatcher = RecordingDispatcher()
    processor = NotificationProcessor(cast(ExactlyOnceDispatcher, dispatcher), cast(Queues, FakeQueues()), gate=gate)
    items = [json.dumps(message_change(message=f"m{n}", etag=f'W/"{n}"')) for n in range(245)]
    message = encode_envelope(datetime.now(UTC), items)

    assert (await processor.process(message)).published == 245
    assert dispatcher.batches == [245]

    gate.on_ack(0.01)  # a POST was just answered: the gate is contended
    assert (await processor.process(message)).items == 245
    assert dispatcher.batches == [245, 100, 100, 45]
    assert gate.in_use == 0
