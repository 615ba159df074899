"""Built-in handlers: invalidate cached Graph data, and forward events to downstream systems.

Both are registered under stable names (the dedupe markers are keyed by them), so renaming a handler
makes it run again for notifications still in flight. Both have a batch form for a queue message's
events: invalidation writes each stale key and group once per batch, forwarding packs the events into
few ``graph-events`` messages (``shared.events.outbound`` says the format).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.concurrency import gather_bounded
from shared.errors import StorageUnavailableError
from shared.events import outbound
from shared.events.bus import EventBus
from shared.events.model import Event
from shared.names import EVENTS_QUEUE
from shared.storage import QUEUE_MESSAGE_MAX_TEXT_BYTES, Queues
from shared.telemetry import get_logger

log = get_logger("events.handlers")

CACHE_USERS_HANDLER = "cache.users"
CACHE_MESSAGES_HANDLER = "cache.messages"
FORWARD_HANDLER = "forward"


class CacheInvalidation(Protocol):
    """What the handlers need from the cache (the lead adapts the cache module to it)."""

    async def invalidate_key(self, namespace: str, key: str) -> None: ...

    async def invalidate_group(self, group: str) -> None: ...

    async def invalidate_groups(self, groups: Collection[str]) -> None: ...

    async def update_message(
        self, user_id: str, message_id: str, data: Mapping[str, Any], *, created: bool
    ) -> bool: ...


@dataclass(frozen=True)
class CacheNames:
    """How the cache names a user's entries and a mailbox's message pages."""

    users_namespace: str = "users"
    user_key: str = "user:{user_id}"
    user_group: str = "user:{user_id}"
    messages_group: str = "messages:{user_id}"


class CacheInvalidator:
    """Drops cached data an event made stale; events without a user id have nothing to drop. With
    ``store_data`` a message a rich notification brought is cached after the invalidation."""

    def __init__(self, cache: CacheInvalidation, names: CacheNames | None = None, *, store_data: bool = True) -> None:
        self._cache = cache
        self._names = names or CacheNames()
        self._store = store_data

    async def user_changed(self, event: Event) -> None:
        """users.updated / users.deleted: the user's own entry and everything grouped under the user."""
        if event.user_id is None:
            return
        names = self._names
        await self._cache.invalidate_key(names.users_namespace, names.user_key.format(user_id=event.user_id))
        await self._cache.invalidate_group(names.user_group.format(user_id=event.user_id))

    async def messages_changed(self, event: Event) -> None:
        """messages.*: the mailbox's cached message pages (a page may list, or now miss, the message)."""
        if event.user_id is None:
            return
        await self._cache.invalidate_group(self._names.messages_group.format(user_id=event.user_id))
        await self._store_data([event])

    async def users_changed_many(self, events: Sequence[Event]) -> Mapping[str, BaseException]:
        """``user_changed`` for a batch: each user's entry and group once (raises: all failed)."""
        names = self._names
        users = {e.user_id for e in events if e.user_id is not None}
        await gather_bounded(
            sorted(users),
            16,
            lambda u: self._cache.invalidate_key(names.users_namespace, names.user_key.format(user_id=u)),
        )
        await self._cache.invalidate_groups({names.user_group.format(user_id=u) for u in users})
        return {}

    async def messages_changed_many(self, events: Sequence[Event]) -> Mapping[str, BaseException]:
        """``messages_changed`` for a batch: each mailbox's group once (raises: all failed)."""
        users = {e.user_id for e in events if e.user_id is not None}
        await self._cache.invalidate_groups({self._names.messages_group.format(user_id=u) for u in users})
        await self._store_data(events)
        return {}

    async def _store_data(self, events: Sequence[Event]) -> None:
        """After the invalidation: cache the message a rich notification brought (created or updated), so
        reading it costs no Graph call. Best effort, newest version wins (the adapter compares)."""
        if not self._store:
            return
        rich = [
            e
            for e in events
            if e.data is not None and e.user_id and e.message_id and e.change_type in ("created", "updated")
        ]
        await gather_bounded(rich, 16, self._store_one)

    async def _store_one(self, event: Event) -> None:
        created = event.change_type == "created"
        await self._cache.update_message(str(event.user_id), str(event.message_id), event.data or {}, created=created)


Enricher = Callable[[Event], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class ForwardingConfig:
    """Where events go, whether they are enriched (off by default: it costs a Graph call each), and how
    many share one queue message (1: the single-event format; more: the ``v: 2`` envelope)."""

    queue: str = EVENTS_QUEUE
    enrich: bool = False
    events_per_message: int = 100


class EventForwarder:
    """Writes events' JSON to the outbound queue: the integration point for downstream systems.

    With enrichment on, the injected ``enricher`` supplies ``data``; if it fails that event fails and is
    retried (its other handlers are not re-run). Data that would not fit one queue message is left out
    (``data`` null) rather than failing forever. A failed send fails exactly the events it carried.
    """

    def __init__(
        self, queues: Queues, config: ForwardingConfig | None = None, enricher: Enricher | None = None
    ) -> None:
        self._queues = queues
        self.config = config or ForwardingConfig()
        self._enricher = enricher

    async def __call__(self, event: Event) -> None:
        failures = await self.send_many([event])
        if event.id in failures:
            raise failures[event.id]

    async def send_many(self, events: Sequence[Event]) -> dict[str, BaseException]:
        """Send ``events`` packed per the config; the events whose enrichment or send failed (id → error)."""
        failures: dict[str, BaseException] = {}
        ready = list(events)
        if self.config.enrich and self._enricher is not None:
            enriched = await gather_bounded(events, 8, self._enrich)
            for event, result in zip(events, enriched, strict=True):
                if isinstance(result, BaseException):
                    failures[event.id] = result
            ready = [r for r in enriched if isinstance(r, Event)]
        packed = self.config.events_per_message > 1
        texts = [self._text(e, packed) for e in ready]
        groups = outbound.pack(texts, self.config.events_per_message, QUEUE_MESSAGE_MAX_TEXT_BYTES)
        queue = await self._queues.get(self.config.queue)

        async def send(group: list[int]) -> None:
            carried = [ready[i] for i in group]
            try:
                await self._send(queue, outbound.encode([texts[i] for i in group], packed), carried)
            except Exception as error:
                failures.update((e.id, error) for e in carried)

        await asyncio.gather(*(send(g) for g in groups))
        return failures

    async def _enrich(self, event: Event) -> Event | BaseException:
        assert self._enricher is not None
        if event.data is not None:  # a rich notification brought the resource: no Graph call
            return event
        try:
            return replace(event, data=await self._enricher(event))
        except Exception as error:
            return error

    def _text(self, event: Event, packed: bool) -> str:
        text = event.to_json()
        if not outbound.fits_alone(text, QUEUE_MESSAGE_MAX_TEXT_BYTES, packed):
            log.warning("forwarding %s %s without its data: too large for one message", event.type, event.id)
            text = replace(event, data=None).to_json()
        return text

    async def _send(self, queue: Any, text: str, events: Sequence[Event]) -> None:
        try:
            # No SDK retry after a lost answer: it would repeat the send unseen. The caller retries it
            # knowingly, and a send whose outcome is unknown is logged: it is the only way a consumer can
            # get an event twice (README, "Delivery guarantee").
            await queue.send_message(text, retry_read=0)
        except StorageUnavailableError as error:
            if error.ambiguous:
                for event in events:
                    _outcome_unknown(event, error.message)
            raise
        except asyncio.CancelledError:
            for event in events:
                _outcome_unknown(event, "the send was cancelled (handler timeout or shutdown)")
            raise


def _outcome_unknown(event: Event, why: str) -> None:
    log.warning("forward outcome unknown for %s %s: %s; a retry may deliver it twice", event.type, event.id, why)


def register_builtin_handlers(
    bus: EventBus,
    *,
    cache: CacheInvalidation | None,
    forwarder: EventForwarder | None,
    cache_names: CacheNames | None = None,
    timeout: float | None = None,
    cache_data: bool = True,
) -> None:
    """Subscribe the cache invalidation and forwarding handlers that are configured."""
    if cache is not None:
        invalidator = CacheInvalidator(cache, cache_names, store_data=cache_data)
        # Invalidation is idempotent, so it runs on every delivery instead of once per dedupe identity: an
        # etag-less change (users) arriving inside the dedupe window must still drop the cached entry.
        users = ["users.updated", "users.deleted"]
        bus.subscribe(
            CACHE_USERS_HANDLER,
            invalidator.user_changed,
            users,
            timeout=timeout,
            once=False,
            batch=invalidator.users_changed_many,
        )
        bus.subscribe(
            CACHE_MESSAGES_HANDLER,
            invalidator.messages_changed,
            ["messages.*"],
            timeout=timeout,
            once=False,
            batch=invalidator.messages_changed_many,
        )
    if forwarder is not None:
        bus.subscribe(FORWARD_HANDLER, forwarder, ["*"], timeout=timeout, batch=forwarder.send_many)
