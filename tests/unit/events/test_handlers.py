"""Built-in handlers: what each event invalidates in the cache, and what forwarding writes."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from shared.errors import StorageUnavailableError
from shared.events.bus import EventBus
from shared.events.handlers import (
    CACHE_MESSAGES_HANDLER,
    CACHE_USERS_HANDLER,
    FORWARD_HANDLER,
    EventForwarder,
    ForwardingConfig,
    register_builtin_handlers,
)
from shared.events.model import Event
from shared.events.outbound import decode_events
from shared.storage import QUEUE_MESSAGE_MAX_TEXT_BYTES, guard
from tests.unit.events.fakes import FakeQueues
from tests.unit.events.samples import make_event


class RecordingCache:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def invalidate_key(self, namespace: str, key: str) -> None:
        self.calls.append(("key", namespace, key))

    async def invalidate_group(self, group: str) -> None:
        self.calls.append(("group", group))

    async def invalidate_groups(self, groups: Collection[str]) -> None:
        self.calls.append(("groups", *sorted(groups)))

    async def update_message(self, user_id: str, message_id: str, data: Mapping[str, Any], *, created: bool) -> bool:
        self.calls.append(("update", user_id, message_id, str(data.get("subject")), str(created)))
        return True


@pytest.fixture(name="cache")
def _cache() -> RecordingCache:
    return RecordingCache()


@pytest.fixture(name="bus")
def _bus(cache: RecordingCache) -> EventBus:
    bus = EventBus()
    register_builtin_handlers(bus, cache=cache, forwarder=None)
    return bus


@pytest.mark.parametrize("event_type", ["users.updated", "users.deleted"])
async def test_user_change_invalidates_the_user_key_and_group(
    bus: EventBus, cache: RecordingCache, event_type: str
) -> None:
    """users.updated/deleted drop ``user:{id}`` (key and group)."""
    result = await bus.publish(make_event(event_type))
    assert [o.name for o in result.outcomes] == [CACHE_USERS_HANDLER]
    assert cache.calls == [("key", "users", "user:u1"), ("group", "user:u1")]


async def test_message_change_invalidates_the_mailbox_pages(bus: EventBus, cache: RecordingCache) -> None:
    """Any messages.* event drops the mailbox's ``messages:{user id}`` group."""
    event = replace(make_event("messages.created"), resource="Users/u1/Messages/m1", message_id="m1")
    result = await bus.publish(event)
    assert [o.name for o in result.outcomes] == [CACHE_MESSAGES_HANDLER]
    assert cache.calls == [("group", "messages:u1")]


async def test_a_message_that_brought_its_data_is_cached_after_the_invalidation(
    bus: EventBus, cache: RecordingCache
) -> None:
    """A rich created/updated event: the mailbox group first, then the message from the data; a deletion, or
    an event without data, only invalidates."""
    rich = replace(make_event("messages.updated"), user_id="u1", message_id="m1", data={"id": "m1", "subject": "s"})
    await bus.publish_many([rich])
    assert cache.calls == [("groups", "messages:u1"), ("update", "u1", "m1", "s", "False")]
    cache.calls.clear()
    deleted = replace(rich, id="e2", type="messages.deleted", change_type="deleted")
    plain = replace(rich, id="e3", data=None)
    await bus.publish_many([deleted, plain])
    assert cache.calls == [("groups", "messages:u1")]


async def test_with_data_caching_off_a_rich_event_only_invalidates(cache: RecordingCache) -> None:
    """``RICH_NOTIFICATIONS_CACHE=false``: no Table calls per message beyond the mailbox's invalidation."""
    bus = EventBus()
    register_builtin_handlers(bus, cache=cache, forwarder=None, cache_data=False)
    rich = replace(make_event("messages.created"), user_id="u1", message_id="m1", data={"id": "m1"})
    await bus.publish_many([rich])
    assert cache.calls == [("groups", "messages:u1")]


async def test_users_created_and_unknown_kinds_invalidate_nothing(bus: EventBus, cache: RecordingCache) -> None:
    """Nothing cached can be stale for a new user or an unrelated resource."""
    assert (await bus.publish(make_event("users.created"))).outcomes == ()
    assert (await bus.publish(make_event("groups.updated"))).outcomes == ()
    assert cache.calls == []


async def test_forwarding_writes_the_event_json_to_graph_events() -> None:
    """The forwarded message is the normalized event, enrichment off by default."""
    queues = FakeQueues()
    bus = EventBus()
    register_builtin_handlers(bus, cache=None, forwarder=EventForwarder(queues))  # type: ignore[arg-type]
    result = await bus.publish(make_event())
    assert [o.name for o in result.outcomes] == [FORWARD_HANDLER]
    (text,) = queues.sent["graph-events"]
    assert json.loads(text) == {"v": 2, "events": [make_event().to_dict()]}
    assert decode_events(text)[0]["data"] is None


async def test_enrichment_fills_data_only_when_switched_on() -> None:
    """The injected enricher runs behind the flag; its result becomes ``data``."""
    calls: list[str] = []

    async def enrich(event: Event) -> Mapping[str, Any]:
        calls.append(event.id)
        return {"displayName": "Adele"}

    off, on = FakeQueues(), FakeQueues()
    await EventForwarder(off, enricher=enrich)(make_event())  # type: ignore[arg-type]
    await EventForwarder(on, ForwardingConfig(enrich=True), enrich)(make_event())  # type: ignore[arg-type]
    assert decode_events(off.sent["graph-events"][0])[0]["data"] is None
    assert decode_events(on.sent["graph-events"][0])[0]["data"] == {"displayName": "Adele"}
    assert calls == ["e1"]


async def test_an_event_that_brought_its_data_is_not_enriched() -> None:
    """A rich notification's decrypted resource is forwarded as is: no Graph call for it."""
    calls: list[str] = []

    async def enrich(event: Event) -> Mapping[str, Any]:
        calls.append(event.id)
        return {"subject": "from Graph"}

    queues = FakeQueues()
    event = replace(make_event(), data={"subject": "from the notification"})
    await EventForwarder(queues, ForwardingConfig(enrich=True), enrich)(event)  # type: ignore[arg-type]
    assert decode_events(queues.sent["graph-events"][0])[0]["data"] == {"subject": "from the notification"}
    assert calls == []


async def test_oversized_enrichment_is_forwarded_without_data() -> None:
    """Data too big for one queue message is left out instead of failing forever."""

    async def enrich(event: Event) -> Mapping[str, Any]:
        return {"blob": "x" * 60_000}

    queues = FakeQueues()
    await EventForwarder(queues, ForwardingConfig(enrich=True), enrich)(make_event())  # type: ignore[arg-type]
    assert decode_events(queues.sent["graph-events"][0])[0]["data"] is None


async def test_a_batch_invalidates_each_user_and_group_once(bus: EventBus, cache: RecordingCache) -> None:
    """Ten message events of two mailboxes and two updates of one user: one group write for all of them,
    and the user's key dropped once."""
    messages = [
        replace(make_event("messages.created"), id=f"m{n}", user_id=f"u{n % 2}", message_id=f"m{n}") for n in range(10)
    ]
    users = [replace(make_event("users.updated"), id=f"x{n}") for n in range(2)]
    results = await bus.publish_many([*messages, *users])
    assert all(r.ok for r in results)
    assert sorted(cache.calls) == [
        ("groups", "messages:u0", "messages:u1"),
        ("groups", "user:u1"),
        ("key", "users", "user:u1"),
    ]


async def test_one_event_per_message_keeps_the_bare_event_format() -> None:
    """``events_per_message=1``: every message is one event object, as consumers of the old format read."""
    queues = FakeQueues()
    forwarder = EventForwarder(queues, ForwardingConfig(events_per_message=1))  # type: ignore[arg-type]
    events = [replace(make_event(), id=f"e{n}") for n in range(3)]
    assert await forwarder.send_many(events) == {}
    texts = queues.sent["graph-events"]
    assert [json.loads(t)["id"] for t in texts] == ["e0", "e1", "e2"]
    assert [decode_events(t)[0]["id"] for t in texts] == ["e0", "e1", "e2"]


async def test_packed_forwarding_fills_messages_up_to_the_count_and_the_size_limit() -> None:
    """250 events at 100 per message: three v2 envelopes in order; large events split by size instead."""
    queues = FakeQueues()
    forwarder = EventForwarder(queues)  # type: ignore[arg-type]
    events = [replace(make_event(), id=f"e{n:03d}") for n in range(250)]
    assert await forwarder.send_many(events) == {}
    decoded = [decode_events(t) for t in queues.sent["graph-events"]]
    assert [len(d) for d in decoded] == [100, 100, 50]
    assert [e["id"] for d in decoded for e in d] == [e.id for e in events]
    big = [replace(make_event(), id=f"b{n}", data={"blob": "x" * 20_000}) for n in range(5)]
    sized = EventForwarder(queues := FakeQueues())  # type: ignore[arg-type]
    assert await sized.send_many(big) == {}
    texts = queues.sent["graph-events"]
    assert all(len(t.encode()) <= QUEUE_MESSAGE_MAX_TEXT_BYTES for t in texts)
    assert [len(decode_events(t)) for t in texts] == [2, 2, 1]


@pytest.mark.parametrize(
    "text",
    ['{"v": 3, "events": []}', '{"v": 2, "events": {}}', '{"v": 2, "events": [1]}', "[]", '{"id": "x"}', "nope"],
)
def test_the_decoder_refuses_what_is_not_a_graph_events_message(text: str) -> None:
    """Unknown versions, wrong shapes and non-JSON are errors, never silently empty."""
    with pytest.raises(ValueError, match=r"."):
        decode_events(text)


class _LostAnswerQueue:
    """A queue whose send fails the way Storage fails: before sending, or after (the answer was lost)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.options: list[dict[str, object]] = []

    async def send_message(self, content: str, **options: object) -> None:
        self.options.append(options)
        raise self.error


class _OneQueue:
    def __init__(self, queue: object) -> None:
        self.queue = queue

    async def get(self, name: str) -> object:
        return guard(self.queue, name)


@pytest.mark.parametrize(
    ("error", "unknown"), [(ServiceResponseError("reset after send"), True), (ServiceRequestError("refused"), False)]
)
async def test_a_send_whose_outcome_is_unknown_is_logged_and_not_retried_by_the_sdk(
    error: Exception, unknown: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The only way a consumer can see an event twice is a send whose answer was lost: the SDK must not
    repeat it silently (retry_read=0), and the app logs it so duplicates can be accounted for."""
    queue = _LostAnswerQueue(error)
    forwarder = EventForwarder(_OneQueue(queue), ForwardingConfig(queue="graph-events"))  # type: ignore[arg-type]
    event = make_event("messages.created")
    with pytest.raises(StorageUnavailableError):
        await forwarder(event)
    assert queue.options == [{"retry_read": 0}]
    assert ("forward outcome unknown" in caplog.text) is unknown
    assert (event.id in caplog.text) is unknown
