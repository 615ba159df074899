"""Built-in handlers: invalidate cached Graph data, and forward events to downstream systems.

Both are registered under stable names (the dedupe markers are keyed by them), so renaming a handler
makes it run again for notifications still in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.errors import StorageUnavailableError
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


@dataclass(frozen=True)
class CacheNames:
    """How the cache names a user's entries and a mailbox's message pages."""

    users_namespace: str = "users"
    user_key: str = "user:{user_id}"
    user_group: str = "user:{user_id}"
    messages_group: str = "messages:{user_id}"


class CacheInvalidator:
    """Drops cached data an event made stale; events without a user id have nothing to drop."""

    def __init__(self, cache: CacheInvalidation, names: CacheNames | None = None) -> None:
        self._cache = cache
        self._names = names or CacheNames()

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


Enricher = Callable[[Event], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class ForwardingConfig:
    """Where events go, and whether they are enriched (off by default: it costs a Graph call each)."""

    queue: str = EVENTS_QUEUE
    enrich: bool = False


class EventForwarder:
    """Writes each event's JSON to the outbound queue: the integration point for downstream systems.

    With enrichment on, the injected ``enricher`` supplies ``data``; if it fails the handler fails and
    the event is retried (its other handlers are not re-run). Data that would not fit one queue message
    is left out (``data`` null) rather than failing forever.
    """

    def __init__(
        self, queues: Queues, config: ForwardingConfig | None = None, enricher: Enricher | None = None
    ) -> None:
        self._queues = queues
        self.config = config or ForwardingConfig()
        self._enricher = enricher

    async def __call__(self, event: Event) -> None:
        if self.config.enrich and self._enricher is not None:
            event = replace(event, data=await self._enricher(event))
        text = event.to_json()
        if len(text.encode("utf-8")) > QUEUE_MESSAGE_MAX_TEXT_BYTES:
            log.warning("forwarding %s %s without its data: too large for one message", event.type, event.id)
            text = replace(event, data=None).to_json()
        queue = await self._queues.get(self.config.queue)
        try:
            # No SDK retry after a lost answer: it would repeat the send unseen. The caller retries it
            # knowingly, and a send whose outcome is unknown is logged: it is the only way a consumer can
            # get an event twice (README, "Delivery guarantee").
            await queue.send_message(text, retry_read=0)
        except StorageUnavailableError as error:
            if error.ambiguous:
                _outcome_unknown(event, error.message)
            raise
        except asyncio.CancelledError:
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
) -> None:
    """Subscribe the cache invalidation and forwarding handlers that are configured."""
    if cache is not None:
        invalidator = CacheInvalidator(cache, cache_names)
        # Invalidation is idempotent, so it runs on every delivery instead of once per dedupe identity: an
        # etag-less change (users) arriving inside the dedupe window must still drop the cached entry.
        users = ["users.updated", "users.deleted"]
        bus.subscribe(CACHE_USERS_HANDLER, invalidator.user_changed, users, timeout=timeout, once=False)
        bus.subscribe(CACHE_MESSAGES_HANDLER, invalidator.messages_changed, ["messages.*"], timeout=timeout, once=False)
    if forwarder is not None:
        bus.subscribe(FORWARD_HANDLER, forwarder, ["*"], timeout=timeout)
