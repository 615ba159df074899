"""The ``graph-lifecycle`` queue processor: dispatch lifecycle notifications to ``LifecycleReactions``.

Graph's lifecycle events: ``reauthorizationRequired`` (renew/reauthorize the subscription),
``subscriptionRemoved`` (recreate it, then resync with delta) and ``missed`` (resync with delta). The
subscription service implements the reactions (``LoggingLifecycleReactions`` only logs and counts, for
tests and tools). Reactions are idempotent by nature (renewing or resyncing twice is harmless), so there are
no dedupe markers here. Malformed messages and bad items are poisoned like in the change processor;
an unknown lifecycle event is logged and dropped (retrying cannot teach us what it means); a failed
reaction makes the message retry after all items were tried.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shared.errors import InvalidInputError, TransientError
from shared.events.notifications import (
    DEFAULT_LIMITS,
    LifecycleNotification,
    NotificationLimits,
    QueueEnvelope,
    message_text,
    parse_envelope,
    parse_item,
)
from shared.events.poison import poison_item, write_poison
from shared.storage import Queues
from shared.telemetry import get_logger

log = get_logger("events.lifecycle")

ItemOutcome = Literal["handled", "unknown", "poisoned", "failed"]


class LifecycleReactions(Protocol):
    """What to do about each lifecycle event; raising means "retry this item later"."""

    async def reauthorization_required(self, notification: LifecycleNotification) -> None: ...

    async def subscription_removed(self, notification: LifecycleNotification) -> None: ...

    async def missed(self, notification: LifecycleNotification) -> None: ...


class LoggingLifecycleReactions:
    """The default reactions: log each event and count it per event name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def _note(self, notification: LifecycleNotification) -> None:
        self.counts[notification.lifecycle_event] += 1
        log.warning(
            "lifecycle event %s for subscription %s (no reaction configured)",
            notification.lifecycle_event,
            notification.subscription_id,
        )

    reauthorization_required = _note
    subscription_removed = _note
    missed = _note


@dataclass(frozen=True)
class LifecycleConfig:
    queue: str = "graph-lifecycle"
    item_concurrency: int = 8  # reactions of one message in flight at once
    limits: NotificationLimits = field(default=DEFAULT_LIMITS)


@dataclass(frozen=True)
class LifecycleResult:
    items: int = 0
    handled: int = 0
    unknown: int = 0
    poisoned: int = 0
    failed: int = 0
    message_poisoned: bool = False


class LifecycleFailedError(TransientError):
    """Some reactions failed: raising makes the host redeliver the message."""

    code = "lifecycle_failed"

    def __init__(self, result: LifecycleResult, dequeue_count: int) -> None:
        super().__init__(
            f"{result.failed} of {result.items} lifecycle notifications failed (attempt {dequeue_count})",
            service="events",
        )
        self.result = result


class LifecycleProcessor:
    """``process(body, dequeue_count)`` for the ``graph-lifecycle`` queue trigger."""

    def __init__(self, reactions: LifecycleReactions, queues: Queues, config: LifecycleConfig | None = None) -> None:
        self._queues = queues
        self.config = config or LifecycleConfig()
        self._reactions: dict[str, Callable[[LifecycleNotification], Awaitable[None]]] = {
            "reauthorizationRequired": reactions.reauthorization_required,
            "subscriptionRemoved": reactions.subscription_removed,
            "missed": reactions.missed,
        }

    async def process(self, body: bytes | str, dequeue_count: int = 1) -> LifecycleResult:
        try:
            envelope = parse_envelope(body, self.config.limits)
        except InvalidInputError as error:
            await write_poison(self._queues, self.config.queue, message_text(body), error.message)
            return LifecycleResult(message_poisoned=True)
        gate = asyncio.Semaphore(self.config.item_concurrency)  # each reaction may call Graph and take leases

        async def one(raw: Any) -> ItemOutcome:
            async with gate:
                return await self._item(raw, envelope)

        outcomes = Counter(await asyncio.gather(*(one(raw) for raw in envelope.items)))
        result = LifecycleResult(
            items=len(envelope.items),
            handled=outcomes["handled"],
            unknown=outcomes["unknown"],
            poisoned=outcomes["poisoned"],
            failed=outcomes["failed"],
        )
        log.info("processed a lifecycle message (attempt %d): %s", dequeue_count, result)
        if result.failed:
            raise LifecycleFailedError(result, dequeue_count)
        return result

    async def _item(self, raw: Any, envelope: QueueEnvelope) -> ItemOutcome:
        try:
            notification = parse_item(raw, self.config.limits)
            if not isinstance(notification, LifecycleNotification):
                raise InvalidInputError("a change notification belongs in the notifications queue")
        except InvalidInputError as error:
            if not await poison_item(self._queues, self.config.queue, envelope.received_at, raw, error.message):
                return "failed"  # retried with the message; never dropped silently
            return "poisoned"
        reaction = self._reactions.get(notification.lifecycle_event)
        if reaction is None:
            log.warning(
                "dropped unknown lifecycle event %r for subscription %s",
                notification.lifecycle_event,
                notification.subscription_id,
            )
            return "unknown"
        try:
            await reaction(notification)
        except Exception:
            log.warning("lifecycle reaction to %s failed", notification.lifecycle_event, exc_info=True)
            return "failed"
        return "handled"
