"""The ``graph-notifications`` queue processor: one message (many items) → events → the bus, once.

Failure handling, item by item:

- A *malformed message* (not UTF-8/JSON, not our envelope) cannot get better by retrying, so the
  processor itself writes it to ``graph-notifications-poison`` with the reason and returns normally;
  the host would otherwise redeliver it ``maxDequeueCount`` times for nothing.
- A *bad item* in a good message is poisoned alone (as a one-item envelope, so a replay after a fix
  processes it), once however often the message is redelivered; its neighbours carry on.
- A *handler failure* (or a storage error around the markers) does not stop the other items. Once all
  items were tried the processor raises ``HandlersFailedError`` so the host redelivers the message;
  on redelivery completed handlers are skipped by their markers and only the failed ones run. After
  ``maxDequeueCount`` (host.json: 5) attempts the host moves the message to the poison queue as-is;
  replaying it later is safe for the same reason.

The good items of a message are dispatched together (``ExactlyOnceDispatcher.dispatch_many``), so their
Storage work is batched: claims and completions in entity-group transactions, one cache write per stale
group, events packed into few ``graph-events`` messages. Each delivery reports the Storage calls it made
(counted at the call, ``metrics.record_processor_storage``).

A rich item (``encryptedContent``, kept by the webhook only after the POST's validation tokens passed) is
decrypted here, with ``decrypt`` (``RICH_NOTIFICATIONS``): its resource becomes the event's ``data``; an item
that does not decrypt (unknown certificate, bad signature, bad padding...) is poisoned alone with the reason
and never reaches a consumer. Without ``decrypt`` the content is ignored and the item is a basic one.

The parse → poison → run → count → raise shape is ``batch.BatchProcessor``, shared with the lifecycle
processor; this module says what a change item is and how it is dispatched.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from shared import metrics
from shared.background import BackgroundGate
from shared.errors import InvalidInputError, TransientError
from shared.events.batch import BatchConfig, BatchFailedError, BatchProcessor, BatchResult
from shared.events.dedupe import DedupeStore
from shared.events.dispatch import DispatchResult, ExactlyOnceDispatcher
from shared.events.model import Event
from shared.events.notifications import ChangeNotification, LifecycleNotification, Notification, QueueEnvelope
from shared.names import NOTIFICATIONS_QUEUE
from shared.richdata.errors import RichDataError
from shared.storage import Queues, counting_calls
from shared.telemetry import get_logger

log = get_logger("events.processor")

ItemOutcome = Literal["published", "duplicate", "poisoned", "failed"]
Decrypt = Callable[[Mapping[str, Any]], dict[str, Any]]  # encryptedContent → the resource (shared/richdata)


@dataclass(frozen=True)
class ProcessorConfig(BatchConfig):
    queue: str = NOTIFICATIONS_QUEUE
    item_concurrency: int = 16  # unused here: a message's items are dispatched as one batch
    # Events per dispatch while webhook POSTs are being answered (see _run_accepted): a transaction's 100 rows.
    # Measured at 500/s offered (bench.webhook): steps of 20 cost 0.48 Storage calls per item and processing
    # fell behind the intake; steps of 100 cost 0.30, kept up, and left ack p99 where it was.
    contended_step: int = 100


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
        *,
        poison_marks: DedupeStore | None = None,
        gate: BackgroundGate | None = None,
        decrypt: Decrypt | None = None,
    ) -> None:
        self.config = config or ProcessorConfig()
        self._decrypt = decrypt
        super().__init__(
            queues,
            self.config,
            result=ProcessResult,
            failure=HandlersFailedError,
            log=log,
            poison_marks=poison_marks,
            gate=gate,
        )
        self._dispatcher = dispatcher

    async def process(self, body: bytes | str, dequeue_count: int = 1) -> ProcessResult:
        """Handle every item; raise ``HandlersFailedError`` at the end if any item must be retried."""
        started = time.perf_counter()
        items = 0
        with metrics.span("notifications.process", {"attempt": str(dequeue_count)}), counting_calls() as storage:
            try:
                result = await self._process_batch(body, dequeue_count)
                items = result.items
            except HandlersFailedError as error:
                items = error.result.items
                raise
            finally:
                metrics.record_processing(time.perf_counter() - started)
                metrics.record_processor_storage(storage.calls, items, storage.conflicts, dequeue_count > 1)
        if result.message_poisoned:
            metrics.record_notifications("poisoned", 1, "message")
        return result

    def _accept(self, notification: Notification) -> ChangeNotification:
        if isinstance(notification, LifecycleNotification):
            raise InvalidInputError("a lifecycle notification belongs in the lifecycle queue")
        if notification.encrypted_content is None:
            return notification
        if self._decrypt is None:  # rich notifications switched off since it was queued: a basic item
            return replace(notification, encrypted_content=None)
        try:
            decrypted = self._decrypt(notification.encrypted_content)
        except RichDataError as error:
            log.warning("resource data of subscription %s refused: %s", notification.subscription_id, error.code)
            raise InvalidInputError(f"resource data refused ({error.code}): {error.message}") from error
        return replace(notification, decrypted=decrypted)

    def _observe(self, outcomes: Counter[str]) -> None:
        for stage, count in outcomes.items():
            metrics.record_notifications(stage, count)

    async def _handle(self, notification: ChangeNotification, envelope: QueueEnvelope) -> ItemOutcome:
        (outcome,) = await self._run_accepted([notification], envelope)
        return outcome

    async def _run_accepted(self, accepted: list[ChangeNotification], envelope: QueueEnvelope) -> list[ItemOutcome]:
        if not accepted:
            return []
        events = [n.to_event(envelope.received_at) for n in accepted]
        gate = self._gate
        if gate is None or not gate.contended:
            return await self._dispatch(events)
        # Webhook POSTs are being answered: smaller steps (each a few short transactions), and the slot
        # goes back between them, so a POST never waits behind a whole message's Storage work.
        outcomes: list[ItemOutcome] = []
        step = self.config.contended_step
        for start in range(0, len(events), step):
            if start:
                await gate.yield_slot()
            outcomes += await self._dispatch(events[start : start + step])
        return outcomes

    async def _dispatch(self, events: list[Event]) -> list[ItemOutcome]:
        try:
            dispatched = await self._dispatcher.dispatch_many(events)
        except TransientError as error:
            log.warning("could not dispatch %d events: %s", len(events), error.message)
            return ["failed"] * len(events)
        return [_outcome(d) for d in dispatched]


def _outcome(dispatched: DispatchResult) -> ItemOutcome:
    event = dispatched.event
    if dispatched.failed:
        log.warning("handlers %s left to run for %s %s", ", ".join(dispatched.failed), event.type, event.id)
        return "failed"
    return "duplicate" if dispatched.duplicate else "published"
