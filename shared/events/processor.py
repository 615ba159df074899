"""The ``graph-notifications`` queue processor: one message (many items) → events → the bus, once.

Failure handling, item by item:

- A *malformed message* (not UTF-8/JSON, not our envelope) cannot get better by retrying, so the
  processor itself writes it to ``graph-notifications-poison`` with the reason and returns normally;
  the host would otherwise redeliver it ``maxDequeueCount`` times for nothing.
- A *bad item* in a good message is poisoned alone (as a one-item envelope, so a replay after a fix
  processes it); its neighbours carry on.
- A *handler failure* (or a storage error around the markers) does not stop the other items. Once all
  items were tried the processor raises ``HandlersFailedError`` so the host redelivers the message;
  on redelivery completed handlers are skipped by their markers and only the failed ones run. After
  ``maxDequeueCount`` (host.json: 5) attempts the host moves the message to the poison queue as-is;
  replaying it later is safe for the same reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from shared import metrics
from shared.errors import InvalidInputError, TransientError
from shared.events.dispatch import ExactlyOnceDispatcher
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

log = get_logger("events.processor")

ItemOutcome = Literal["published", "duplicate", "poisoned", "failed"]


@dataclass(frozen=True)
class ProcessorConfig:
    queue: str = "graph-notifications"
    item_concurrency: int = 16  # items of one message processed at once (each costs a few table calls)
    limits: NotificationLimits = field(default=DEFAULT_LIMITS)


@dataclass(frozen=True)
class ProcessResult:
    """Counts per item outcome; ``message_poisoned`` when the message itself was unreadable."""

    items: int = 0
    published: int = 0
    duplicates: int = 0
    poisoned: int = 0
    failed: int = 0
    message_poisoned: bool = False


class HandlersFailedError(TransientError):
    """Some items still have handlers to run: raising makes the host redeliver the message."""

    code = "handlers_failed"

    def __init__(self, result: ProcessResult, dequeue_count: int) -> None:
        super().__init__(
            f"{result.failed} of {result.items} notifications have handlers left to run (attempt {dequeue_count})",
            service="events",
        )
        self.result = result


class NotificationProcessor:
    """``process(body, dequeue_count)`` for the ``graph-notifications`` queue trigger."""

    def __init__(
        self, dispatcher: ExactlyOnceDispatcher, queues: Queues, config: ProcessorConfig | None = None
    ) -> None:
        self._dispatcher = dispatcher
        self._queues = queues
        self.config = config or ProcessorConfig()

    async def process(self, body: bytes | str, dequeue_count: int = 1) -> ProcessResult:
        """Handle every item; raise ``HandlersFailedError`` at the end if any item must be retried."""
        started = time.perf_counter()
        with metrics.span("notifications.process", {"attempt": str(dequeue_count)}):
            try:
                result = await self._process(body, dequeue_count)
            finally:
                metrics.record_processing(time.perf_counter() - started)
        return result

    async def _process(self, body: bytes | str, dequeue_count: int) -> ProcessResult:
        try:
            envelope = parse_envelope(body, self.config.limits)
        except InvalidInputError as error:
            await write_poison(self._queues, self.config.queue, message_text(body), error.message)
            metrics.record_notifications("poisoned", 1, "message")
            return ProcessResult(message_poisoned=True)
        gate = asyncio.Semaphore(self.config.item_concurrency)

        async def one(raw: Any) -> ItemOutcome:
            async with gate:
                return await self._item(raw, envelope)

        outcomes = Counter(await asyncio.gather(*(one(raw) for raw in envelope.items)))
        result = ProcessResult(
            items=len(envelope.items),
            published=outcomes["published"],
            duplicates=outcomes["duplicate"],
            poisoned=outcomes["poisoned"],
            failed=outcomes["failed"],
        )
        log.info("processed a notification message (attempt %d): %s", dequeue_count, result)
        for stage, count in outcomes.items():
            metrics.record_notifications(stage, count)
        if result.failed:
            raise HandlersFailedError(result, dequeue_count)
        return result

    async def _item(self, raw: Any, envelope: QueueEnvelope) -> ItemOutcome:
        try:
            notification = parse_item(raw, self.config.limits)
            if isinstance(notification, LifecycleNotification):
                raise InvalidInputError("a lifecycle notification belongs in the lifecycle queue")
        except InvalidInputError as error:
            if not await poison_item(self._queues, self.config.queue, envelope.received_at, raw, error.message):
                return "failed"  # retried with the message; never dropped silently
            return "poisoned"
        event = notification.to_event(envelope.received_at)
        try:
            dispatched = await self._dispatcher.dispatch(event)
        except TransientError as error:
            log.warning("could not dispatch %s %s: %s", event.type, event.id, error.message)
            return "failed"
        if dispatched.failed:
            log.warning("handlers %s left to run for %s %s", ", ".join(dispatched.failed), event.type, event.id)
            return "failed"
        return "duplicate" if dispatched.duplicate else "published"
