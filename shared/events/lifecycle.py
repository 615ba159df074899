"""The ``graph-lifecycle`` queue processor: dispatch lifecycle notifications to ``LifecycleReactions``.

Graph's lifecycle events: ``reauthorizationRequired`` (renew/reauthorize the subscription),
``subscriptionRemoved`` (recreate it, then resync with delta) and ``missed`` (resync with delta). The
subscription service implements the reactions (``LoggingLifecycleReactions`` only logs and counts, for
tests and tools). Reactions are idempotent by nature (renewing or resyncing twice is harmless), so there are
no dedupe markers here. Malformed messages and bad items are poisoned like in the change processor (both
share ``batch.BatchProcessor``);
an unknown lifecycle event is logged and dropped (retrying cannot teach us what it means); a failed
reaction makes the message retry after all items were tried.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from shared.errors import InvalidInputError
from shared.events.batch import BatchConfig, BatchFailedError, BatchProcessor, BatchResult
from shared.events.dedupe import DedupeStore
from shared.events.notifications import LifecycleNotification, Notification, QueueEnvelope
from shared.names import LIFECYCLE_QUEUE
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
class LifecycleConfig(BatchConfig):
    queue: str = LIFECYCLE_QUEUE
    item_concurrency: int = 8  # reactions of one message in flight at once (each may call Graph, take leases)


@dataclass(frozen=True)
class LifecycleResult(BatchResult):
    """Counts per item outcome (``unknown``: an event name we do not know, dropped)."""

    handled: int = 0
    unknown: int = 0


class LifecycleFailedError(BatchFailedError[LifecycleResult]):
    """Some reactions failed: raising makes the host redeliver the message."""

    code = "lifecycle_failed"
    left_to_run = "lifecycle notifications failed"


class LifecycleProcessor(BatchProcessor[LifecycleNotification, LifecycleResult]):
    """``process(body, dequeue_count)`` for the ``graph-lifecycle`` queue trigger."""

    def __init__(
        self,
        reactions: LifecycleReactions,
        queues: Queues,
        config: LifecycleConfig | None = None,
        *,
        poison_marks: DedupeStore | None = None,
    ) -> None:
        self.config = config or LifecycleConfig()
        super().__init__(
            queues,
            self.config,
            result=LifecycleResult,
            failure=LifecycleFailedError,
            log=log,
            poison_marks=poison_marks,  # a bad item is parked once, however often its message is redelivered
        )
        self._reactions: dict[str, Callable[[LifecycleNotification], Awaitable[None]]] = {
            "reauthorizationRequired": reactions.reauthorization_required,
            "subscriptionRemoved": reactions.subscription_removed,
            "missed": reactions.missed,
        }

    async def process(self, body: bytes | str, dequeue_count: int = 1) -> LifecycleResult:
        """React to every item; raise ``LifecycleFailedError`` at the end if any reaction must be retried."""
        return await self._process_batch(body, dequeue_count)

    def _accept(self, notification: Notification) -> LifecycleNotification:
        if not isinstance(notification, LifecycleNotification):
            raise InvalidInputError("a change notification belongs in the notifications queue")
        return notification

    async def _handle(self, notification: LifecycleNotification, envelope: QueueEnvelope) -> ItemOutcome:
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
