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

The parse → poison → bounded run → count → raise shape is ``batch.BatchProcessor``, shared with the
lifecycle processor; this module says what a change item is and how it is dispatched.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from shared import metrics
from shared.background import BackgroundGate
from shared.errors import InvalidInputError, TransientError
from shared.events.batch import BatchConfig, BatchFailedError, BatchProcessor, BatchResult
from shared.events.dispatch import ExactlyOnceDispatcher
from shared.events.notifications import ChangeNotification, LifecycleNotification, Notification, QueueEnvelope
from shared.names import NOTIFICATIONS_QUEUE
from shared.storage import Queues
from shared.telemetry import get_logger

log = get_logger("events.processor")

ItemOutcome = Literal["published", "duplicate", "poisoned", "failed"]


@dataclass(frozen=True)
class ProcessorConfig(BatchConfig):
    queue: str = NOTIFICATIONS_QUEUE
    item_concurrency: int = 16  # items of one message processed at once (each costs a few table calls)


@dataclass(frozen=True)
class ProcessResult(BatchResult):
    """Counts per item outcome; ``message_poisoned`` when the message itself was unreadable."""

    published: int = 0
    duplicates: int = 0
    outcome_names = {"duplicates": "duplicate"}


class HandlersFailedError(BatchFailedError[ProcessResult]):
    """Some items still have handlers to run: raising makes the host redeliver the message."""

    code = "handlers_failed"
    left_to_run = "notifications have handlers left to run"


class NotificationProcessor(BatchProcessor[ChangeNotification, ProcessResult]):
    """``process(body, dequeue_count)`` for the ``graph-notifications`` queue trigger."""

    def __init__(
        self,
        dispatcher: ExactlyOnceDispatcher,
        queues: Queues,
        config: ProcessorConfig | None = None,
        gate: BackgroundGate | None = None,
    ) -> None:
        self.config = config or ProcessorConfig()
        super().__init__(queues, self.config, result=ProcessResult, failure=HandlersFailedError, log=log, gate=gate)
        self._dispatcher = dispatcher

    async def process(self, body: bytes | str, dequeue_count: int = 1) -> ProcessResult:
        """Handle every item; raise ``HandlersFailedError`` at the end if any item must be retried."""
        started = time.perf_counter()
        with metrics.span("notifications.process", {"attempt": str(dequeue_count)}):
            try:
                result = await self._process_batch(body, dequeue_count)
            finally:
                metrics.record_processing(time.perf_counter() - started)
        if result.message_poisoned:
            metrics.record_notifications("poisoned", 1, "message")
        return result

    def _accept(self, notification: Notification) -> ChangeNotification:
        if isinstance(notification, LifecycleNotification):
            raise InvalidInputError("a lifecycle notification belongs in the lifecycle queue")
        return notification

    def _observe(self, outcomes: Counter[str]) -> None:
        for stage, count in outcomes.items():
            metrics.record_notifications(stage, count)

    async def _handle(self, notification: ChangeNotification, envelope: QueueEnvelope) -> ItemOutcome:
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
