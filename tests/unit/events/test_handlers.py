"""Built-in handlers: what each event invalidates in the cache, and what forwarding writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
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
from shared.storage import guard
from tests.unit.events.fakes import FakeQueues
from tests.unit.events.samples import make_event


class RecordingCache:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def invalidate_key(self, namespace: str, key: str) -> None:
        self.calls.append(("key", namespace, key))

    async def invalidate_group(self, group: str) -> None:
        self.calls.append(("group", group))


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
    assert json.loads(text) == make_event().to_dict()
    assert json.loads(text)["data"] is None


async def test_enrichment_fills_data_only_when_switched_on() -> None:
    """The injected enricher runs behind the flag; its result becomes ``data``."""
    calls: list[str] = []

    async def enrich(event: Event) -> Mapping[str, Any]:
        calls.append(event.id)
        return {"displayName": "Adele"}

    off, on = FakeQueues(), FakeQueues()
    await EventForwarder(off, enricher=enrich)(make_event())  # type: ignore[arg-type]
    await EventForwarder(on, ForwardingConfig(enrich=True), enrich)(make_event())  # type: ignore[arg-type]
    assert json.loads(off.sent["graph-events"][0])["data"] is None
    assert json.loads(on.sent["graph-events"][0])["data"] == {"displayName": "Adele"}
    assert calls == ["e1"]


async def test_oversized_enrichment_is_forwarded_without_data() -> None:
    """Data too big for one queue message is left out instead of failing forever."""

    async def enrich(event: Event) -> Mapping[str, Any]:
        return {"blob": "x" * 60_000}

    queues = FakeQueues()
    await EventForwarder(queues, ForwardingConfig(enrich=True), enrich)(make_event())  # type: ignore[arg-type]
    assert json.loads(queues.sent["graph-events"][0])["data"] is None


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
