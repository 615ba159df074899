"""Batched processing on Azurite: a message's markers in entity-group transactions, events packed, and
exactly once per version through partial transactions, half-claimed redeliveries, crashes and poison."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import StorageUnavailableError
from shared.events.bus import EventBus
from shared.events.dedupe import OWNERS_PARTITION, DedupeConfig, DedupeStore
from shared.events.dispatch import ExactlyOnceDispatcher
from shared.events.handlers import FORWARD_HANDLER, EventForwarder, ForwardingConfig, register_builtin_handlers
from shared.events.lifecycle import LoggingLifecycleReactions
from shared.events.model import Event
from shared.events.notifications import (
    ChangeNotification,
    LifecycleNotification,
    encode_envelope,
    parse_envelope,
    parse_item,
)
from shared.events.outbound import decode_events
from shared.events.poison import peek_poison
from shared.events.processor import HandlersFailedError, NotificationProcessor, ProcessorConfig
from shared.names import DEDUPE_TABLE
from shared.storage import OutageWait, Queues, Tables, counting_calls
from tests.integration.events.conftest import QueueNames, drain
from tests.unit.events import samples

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
FORWARD_LEASE = 10.0 + 5.0  # the bus's default timeout plus the dedupe lease margin


def items(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Distinct message notifications (each its own etag, so each its own dedupe identity)."""
    return [
        samples.message_change(message=f"AAMk{n:06d}=", etag=f'W/"CQAAAB{n:06d}"') for n in range(start, start + count)
    ]


def message(*batch: object) -> str:
    return encode_envelope(RECEIVED, [json.dumps(i) for i in batch])


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Stack:
    """The real processor, dispatcher, markers and forwarder on Azurite; a fake clock for leases."""

    def __init__(self, tables: Tables, queues: Queues, names: QueueNames, *, fail_forward: int = 0) -> None:
        self.clock = Clock()
        self.dedupe = DedupeStore(tables, now=self.clock)
        self.bus = EventBus()
        self.forwarder = EventForwarder(queues, ForwardingConfig(queue=names.events))
        register_builtin_handlers(self.bus, cache=None, forwarder=self.forwarder)
        self.failures = fail_forward
        self.dispatcher = ExactlyOnceDispatcher(self.bus, self.dedupe)
        self.processor = NotificationProcessor(
            self.dispatcher, queues, ProcessorConfig(queue=names.notifications), poison_marks=self.dedupe
        )
        self.queues = queues
        self.names = names

    def fail_next_user_events(self, count: int) -> None:
        """A second once-handler on users.* that fails ``count`` times (makes the host redeliver)."""
        self.failures = count

        async def flaky(event: Event) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("downstream is down")

        self.bus.subscribe("flaky", flaky, ["users.*"])

    async def forwarded(self) -> Counter[str]:
        texts = await drain(await self.queues.get(self.names.events))
        return Counter(e["id"] for text in texts for e in decode_events(text))

    async def events_of(self, batch: Sequence[dict[str, Any]]) -> list[Event]:
        """The events the processor makes of ``batch`` (their ids are the dedupe identities)."""
        parsed = [parse_item(i) for i in parse_envelope(message(*batch)).items]
        return [p.to_event(RECEIVED) for p in parsed if isinstance(p, ChangeNotification)]


@pytest.fixture(name="stack")
def _stack(tables: Tables, queues: Queues, names: QueueNames) -> Stack:
    return Stack(tables, queues, names)


async def test_a_message_of_sixty_items_costs_a_few_storage_calls_and_forwards_each_once(stack: Stack) -> None:
    """60 new items: the claims are one transaction per marker partition, the completion one owner row,
    the events one packed message; counted at the call, that is at most partitions + 2 calls."""
    with counting_calls() as counted:
        result = await stack.processor.process(message(*items(60)))
    assert result.published == 60
    partitions = DedupeConfig().partitions
    assert counted.calls <= partitions + 2, counted.calls
    texts = await drain(await stack.queues.get(stack.names.events))
    assert len(texts) == 1
    assert json.loads(texts[0])["v"] == 2
    forwarded = Counter(e["id"] for e in decode_events(texts[0]))
    assert len(forwarded) == 60
    assert set(forwarded.values()) == {1}


async def marker_rows(tables: Tables) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The dedupe table's claim rows and owner rows."""
    rows = [dict(r) async for r in (await tables.get(DEDUPE_TABLE)).list_entities()]
    return [r for r in rows if r["PartitionKey"] != OWNERS_PARTITION], [
        r for r in rows if r["PartitionKey"] == OWNERS_PARTITION
    ]


async def test_a_clean_dispatch_is_completed_by_one_owner_row_that_outlives_the_lease(
    stack: Stack, tables: Tables
) -> None:
    """Every handler succeeded: the claims stay ``running`` and one owner row marks them all done, so a
    redelivery long after the claims' lease finds them done instead of taking them over."""
    batch = items(20)
    assert (await stack.processor.process(message(*batch))).published == 20
    claims, owners = await marker_rows(tables)
    assert len(owners) == 1
    assert len(claims) == 20
    assert {(c["State"], c["Owner"]) for c in claims} == {("running", owners[0]["RowKey"])}

    stack.clock.now += timedelta(seconds=FORWARD_LEASE + 1)
    with counting_calls() as counted:
        again = await stack.processor.process(message(*batch), dequeue_count=2)
    assert (again.published, again.duplicates) == (0, 20)
    assert counted.calls <= DedupeConfig().partitions + 20 + 1  # failed transactions, reads, one owner read
    (event,) = await stack.events_of(batch[:1])
    assert await stack.dedupe.completed(event.id) == {FORWARD_HANDLER}
    assert set((await stack.forwarded()).values()) == {1}


async def test_a_dispatch_with_a_failure_records_its_successes_row_by_row(stack: Stack, tables: Tables) -> None:
    """One handler failed on one event: no owner row (it would cover a handler that did not run), the
    successes are marked done row by row, the failure is released; the redelivery, after every lease,
    runs the failed handler alone."""
    batch = items(5)
    events = await stack.events_of(batch)
    runs: Counter[str] = Counter()

    async def flaky(event: Event) -> None:
        runs[event.id] += 1
        if event.id == events[2].id and runs[event.id] == 1:
            raise RuntimeError("downstream is down")

    stack.bus.subscribe("flaky", flaky, ["messages.*"])
    with pytest.raises(HandlersFailedError) as raised:
        await stack.processor.process(message(*batch))
    assert raised.value.result.failed == 1
    claims, owners = await marker_rows(tables)
    assert owners == []
    assert Counter(c["State"] for c in claims) == {"done": 9}  # 5 forwards, 4 flaky; the failed one released

    stack.clock.now += timedelta(seconds=FORWARD_LEASE + 1)
    again = await stack.processor.process(message(*batch), dequeue_count=2)
    assert again.failed == 0
    assert runs == {e.id: 2 if e is events[2] else 1 for e in events}
    assert set((await stack.forwarded()).values()) == {1}


async def test_a_completion_that_cannot_be_written_keeps_the_claims_until_their_lease_ends(
    stack: Stack, tables: Tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forwarded, then Storage refused the owner row past the outage budget: the outcomes are
    ``unrecorded`` (the message is retried), a redelivery within the lease finds the claims busy and sends
    nothing; after the lease it forwards again. That second copy is the duplicate window the README states
    (a completion lost past the budget)."""
    stack.dispatcher = ExactlyOnceDispatcher(stack.bus, stack.dedupe, OutageWait(budget_seconds=0.3, first_delay=0.1))
    stack.processor = NotificationProcessor(
        stack.dispatcher, stack.queues, ProcessorConfig(queue=stack.names.notifications), poison_marks=stack.dedupe
    )

    async def refused(owner: str) -> None:
        raise StorageUnavailableError("owner row")

    batch = items(3)
    with monkeypatch.context() as patched:
        patched.setattr(stack.dedupe, "complete_owner", refused)
        with pytest.raises(HandlersFailedError) as raised:
            await stack.processor.process(message(*batch))
    assert raised.value.result.failed == 3
    assert (await marker_rows(tables))[1] == []

    with pytest.raises(HandlersFailedError):  # within the lease: held, nothing sent again
        await stack.processor.process(message(*batch), dequeue_count=2)
    assert set((await stack.forwarded()).values()) == {1}

    stack.clock.now += timedelta(seconds=FORWARD_LEASE + 1)
    assert (await stack.processor.process(message(*batch), dequeue_count=3)).published == 3
    assert set((await stack.forwarded()).values()) == {1}  # the second copy (the first was drained above)


async def test_a_transaction_that_fails_in_part_still_decides_every_marker(stack: Stack) -> None:
    """Item 3 was forwarded by an earlier message and item 5 is being run by another worker: the
    all-or-nothing transaction of their partition fails on them, the rest are claimed row by row; the
    busy one is retried, and across both deliveries every event is forwarded exactly once."""
    batch = items(10)
    await stack.processor.process(message(batch[3]))
    events = await stack.events_of(batch)
    other = await stack.dedupe.claim(events[5].id, {FORWARD_HANDLER: 10.0}, owner="another-worker")
    assert other[FORWARD_HANDLER].state == "acquired"

    with pytest.raises(HandlersFailedError) as raised:
        await stack.processor.process(message(*batch))
    assert (raised.value.result.published, raised.value.result.duplicates, raised.value.result.failed) == (8, 1, 1)

    stack.clock.now += timedelta(seconds=FORWARD_LEASE + 1)  # the other worker died: its lease runs out
    again = await stack.processor.process(message(*batch), dequeue_count=2)
    assert (again.published, again.duplicates) == (1, 9)
    forwarded = await stack.forwarded()
    assert sorted(forwarded) == sorted(e.id for e in events)
    assert set(forwarded.values()) == {1}


async def test_a_redelivered_message_whose_claims_half_exist(stack: Stack) -> None:
    """A first delivery completed half of the items and crashed holding claims on the other half (never
    forwarded): once the claims' lease is over, the redelivery forwards exactly the missing half."""
    batch = items(20)
    events = await stack.events_of(batch)
    done = await stack.dedupe.claim_many([(e.id, {FORWARD_HANDLER: 10.0}) for e in events[:10]], owner="first")
    await stack.dedupe.complete(done.values())
    await stack.forwarder.send_many(events[:10])  # what the first delivery had forwarded
    held = await stack.dedupe.claim_many([(e.id, {FORWARD_HANDLER: 10.0}) for e in events[10:]], owner="first")
    assert {c.state for c in held.values()} == {"acquired"}

    with pytest.raises(HandlersFailedError) as raised:  # within the lease: the other half is still busy
        await stack.processor.process(message(*batch), dequeue_count=2)
    assert (raised.value.result.duplicates, raised.value.result.failed) == (10, 10)

    stack.clock.now += timedelta(seconds=FORWARD_LEASE + 1)
    result = await stack.processor.process(message(*batch), dequeue_count=3)
    assert (result.published, result.duplicates) == (10, 10)
    forwarded = await stack.forwarded()
    assert sorted(forwarded) == sorted(e.id for e in events)
    assert set(forwarded.values()) == {1}


async def test_a_crash_between_claim_and_forward_is_forwarded_once_after_the_lease(stack: Stack) -> None:
    """Claims written, then the worker died before sending: nothing is forwarded until the lease ends,
    then exactly once; a further redelivery is a duplicate."""
    batch = items(5)
    events = await stack.events_of(batch)
    await stack.dedupe.claim_many([(e.id, {FORWARD_HANDLER: 10.0}) for e in events], owner="crashed")
    with pytest.raises(HandlersFailedError):
        await stack.processor.process(message(*batch))
    assert await stack.forwarded() == Counter()
    stack.clock.now += timedelta(seconds=FORWARD_LEASE + 1)
    assert (await stack.processor.process(message(*batch))).published == 5
    assert (await stack.processor.process(message(*batch))).duplicates == 5
    assert set((await stack.forwarded()).values()) == {1}


async def test_a_poison_item_in_the_middle_is_written_once_across_redeliveries(
    stack: Stack, queues: Queues, names: QueueNames
) -> None:
    """[good, good, bad, good, user]: the user event's second handler fails twice, so the message is
    delivered three times; the bad item reaches the poison queue exactly once, the good ones are forwarded
    once each."""
    stack.fail_next_user_events(2)
    bad = {**samples.message_change(), "changeType": 42}
    batch = [*items(2), bad, *items(1, start=2), samples.user_change()]
    for attempt in (1, 2):
        with pytest.raises(HandlersFailedError) as raised:
            await stack.processor.process(message(*batch), dequeue_count=attempt)
        assert (raised.value.result.poisoned, raised.value.result.failed) == (1, 1)
    final = await stack.processor.process(message(*batch), dequeue_count=3)
    assert (final.poisoned, final.failed) == (1, 0)
    parked = await peek_poison(queues, names.notifications)
    assert len(parked) == 1, f"the bad item was poisoned {len(parked)} times"
    assert parse_envelope(parked[0].original).items == [bad]
    forwarded = await stack.forwarded()
    assert len(forwarded) == 4
    assert set(forwarded.values()) == {1}


async def test_the_same_notification_twice_in_one_message_is_forwarded_once(stack: Stack) -> None:
    """Graph may repeat an item within one POST (and group commit packs POSTs): one claim, one event."""
    (one,) = items(1)
    result = await stack.processor.process(message(one, one))
    assert (result.published, result.duplicates) == (1, 1)
    assert list((await stack.forwarded()).values()) == [1]


async def test_single_event_dispatch_still_works_for_delta_and_the_mirror(stack: Stack) -> None:
    """``dispatch(event)`` (delta catch-up, the mirror) goes through the same batched path."""
    (event,) = await stack.events_of(items(1))
    assert not (await stack.dispatcher.dispatch(event)).failed
    assert (await stack.dispatcher.dispatch(event)).duplicate
    assert list((await stack.forwarded()).values()) == [1]


async def test_a_bad_lifecycle_item_is_poisoned_once_across_redeliveries(
    tables: Tables, queues: Queues, names: QueueNames
) -> None:
    """The lifecycle queue parks a bad item once too: [missed, bad, reauthorizationRequired] whose reaction
    fails twice is delivered three times; the poison queue holds the bad item once."""
    from shared.events.lifecycle import LifecycleConfig, LifecycleFailedError, LifecycleProcessor

    class FlakyReactions(LoggingLifecycleReactions):
        failures = 2

        async def reauthorization_required(self, notification: LifecycleNotification) -> None:  # type: ignore[override]
            if self.failures:
                self.failures -= 1
                raise RuntimeError("Graph is down")
            self.counts[notification.lifecycle_event] += 1

    reactions = FlakyReactions()
    processor = LifecycleProcessor(
        reactions, queues, LifecycleConfig(queue=names.lifecycle), poison_marks=DedupeStore(tables)
    )
    bad = {**samples.lifecycle("missed"), "subscriptionId": 42}
    body = message(samples.lifecycle("missed"), bad, samples.lifecycle("reauthorizationRequired"))
    for attempt in (1, 2):
        with pytest.raises(LifecycleFailedError):
            await processor.process(body, dequeue_count=attempt)
    final = await processor.process(body, dequeue_count=3)

    assert final.poisoned == 1
    parked = await peek_poison(queues, names.lifecycle)
    assert len(parked) == 1, f"the bad item was poisoned {len(parked)} times"
    assert parse_envelope(parked[0].original).items == [bad]
