"""The event hub path: Graph writes each notification POST body (``{"value": [...]}``) as one event into an
event hub; the Event Hubs trigger hands a batch of events to ``EventHubIngest.process``.

Each event goes the webhook's way minus the queue: validate the body, drop Graph's validation message (Graph
writes one into the hub when a subscription is created instead of the handshake), check each item's
clientState against our subscription records. Then the batch's items are fed to the *same* processors the
queues feed (``NotificationProcessor`` for changes, ``LifecycleProcessor`` for lifecycle events): the items of
the events enqueued within one fallback-identity window (5 minutes) go together, in as few envelopes as the
processor's limits allow, received at the earliest of their enqueue times. Enqueue times are the same on
every redelivery and the window decides the only identity that depends on time, so grouping changes no
event's id, while the processor batches its Storage work per envelope (as for a queue message of ~100 items).
Exactly once per version therefore holds as on the queue path: the dedupe identity is the change's, not the
delivery's, and a redelivered batch finds its completed handlers marked done.

Failure handling, equivalent to the queue path's:

- a *malformed event* (not Graph's JSON shape) is parked once in ``graph-eventhub-poison`` (a dedupe marker per
  event: body, sequence number and enqueue time) and the batch proceeds;
- a *bad item* in a good event goes to the processors, which poison it alone, once (``graph-notifications-poison``);
- items whose handlers failed make their envelope (and the events of its window) fail; ``process`` raises
  ``HubEventsFailedError`` after the whole batch was tried, so the host does not checkpoint and the batch is
  delivered again from the last checkpoint (the function's retry policy); completed work is skipped by its
  markers;
- on the retry policy's last attempt (``last_attempt``) an envelope still failing is parked instead, as the
  host parks a queue message after ``maxDequeueCount``: in ``graph-notifications-poison`` /
  ``graph-lifecycle-poison`` (so ``ops replay`` runs it through the queue path), and the batch succeeds.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import metrics
from shared.concurrency import gather_bounded
from shared.errors import InvalidInputError, TransientError
from shared.events.dedupe import DedupeStore
from shared.events.model import ETAGLESS_WINDOW_SECONDS
from shared.events.notifications import (
    DEFAULT_LIMITS,
    ChangeNotification,
    NotificationLimits,
    encode_envelope,
    parse_body,
    parse_item,
)
from shared.events.poison import poison_items, write_poison
from shared.events.webhook import ClientStateSource, client_state_matches
from shared.names import EVENTHUB_SOURCE, LIFECYCLE_QUEUE, NOTIFICATIONS_QUEUE
from shared.storage import Queues
from shared.telemetry import get_logger

log = get_logger("events.eventhub")


@dataclass(frozen=True)
class HubEvent:
    """One event as the trigger received it (``func.EventHubEvent``'s body and system properties)."""

    body: bytes
    enqueued_time: datetime | None = None
    sequence_number: int | None = None
    partition_key: str | None = None
    offset: int | str | None = None

    def describe(self) -> dict[str, Any]:
        """Where the event was in the hub (kept with a poisoned event)."""
        when = self.enqueued_time.isoformat() if self.enqueued_time else None
        return {"sequenceNumber": self.sequence_number, "offset": self.offset, "partitionKey": self.partition_key,
                "enqueuedTime": when}  # fmt: skip


class EnvelopeProcessor(Protocol):
    """A queue processor: ``process(envelope text, attempt)``, raising ``TransientError`` to be retried."""

    async def process(self, body: bytes | str, dequeue_count: int = 1) -> object: ...


@dataclass(frozen=True)
class HubBatchResult:
    """What one batch came to, per event and per item."""

    events: int
    processed: int = 0
    poisoned: int = 0  # whole events parked (malformed, or still failing on the last attempt)
    failed: int = 0  # events left to retry
    changes: int = 0
    lifecycle: int = 0
    validation: int = 0  # Graph's validation messages, ignored
    refused: int = 0  # unknown subscription or wrong clientState


class HubEventsFailedError(TransientError):
    """Some events still have work to do: raising keeps the checkpoint where it is, so they come again."""

    code = "eventhub_events_failed"

    def __init__(self, result: HubBatchResult) -> None:
        super().__init__(f"{result.failed} of {result.events} events have handlers left to run", service="events")
        self.result = result


def is_validation_item(raw: Any) -> bool:
    """Graph's validation message in a hub: ``subscriptionId`` "NA", ``changeType`` "Validation: ..."."""
    if not isinstance(raw, dict) or raw.get("subscriptionId") != "NA":
        return False
    change = raw.get("changeType")
    return isinstance(change, str) and change.startswith("Validation:")


class EventHubIngest:
    """``process(events, last_attempt=...)`` for the Event Hubs trigger (cardinality many)."""

    def __init__(
        self,
        registry: ClientStateSource,
        changes: EnvelopeProcessor,
        lifecycle: EnvelopeProcessor,
        queues: Queues,
        *,
        poison_marks: DedupeStore | None = None,
        limits: NotificationLimits = DEFAULT_LIMITS,
        concurrency: int = 2,
        items_per_envelope: int = 100,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``concurrency``: events read, and envelopes processed, at once per batch (the host runs a batch per
        partition besides); ``items_per_envelope``: about what the webhook packs into one queue message."""
        self._registry = registry
        self._changes = changes
        self._lifecycle = lifecycle
        self._queues = queues
        self._marks = poison_marks  # each malformed event is parked once
        self._limits = limits
        self._concurrency = concurrency
        self._items_per_envelope = items_per_envelope
        self._now = now

    async def process(self, events: Sequence[HubEvent], *, last_attempt: bool = False) -> HubBatchResult:
        """Every event tried once; raise ``HubEventsFailedError`` at the end if any must be retried."""

        async def read(event: HubEvent) -> _Read:
            return await self._read(event, last_attempt)

        reads = await gather_bounded(events, self._concurrency, read)
        totals: Counter[str] = Counter()
        for one in reads:
            totals.update(one.counts)
        groups: dict[int, list[_Read]] = {}
        for one in reads:
            if one.outcome is None:
                groups.setdefault(_window(one.received_at), []).append(one)
            else:
                totals[one.outcome] += 1
        for group in groups.values():
            outcome = await self._run_group(group, last_attempt)
            totals[outcome] += len(group)
        result = HubBatchResult(events=len(events), **{k: totals[k] for k in _COUNTED})
        log.info("processed %d hub events (last attempt: %s): %s", len(events), last_attempt, result)
        for reason in ("refused", "validation"):
            metrics.record_notifications("dropped", totals[reason], f"eventhub_{reason}")
        metrics.record_notifications("poisoned", result.poisoned, "eventhub_event")
        if result.failed:
            raise HubEventsFailedError(result)
        return result

    async def _read(self, event: HubEvent, last_attempt: bool) -> _Read:
        """One event's accepted items, or its outcome when it has none to run (parked, or to be retried)."""
        received_at = event.enqueued_time or self._now()
        try:
            raw_items = parse_body(event.body, self._limits)
        except InvalidInputError as error:
            return _Read(received_at, await self._park_malformed(event, received_at, error.message))
        read = _Read(received_at)
        try:
            read.changes, read.lifecycle = await self._authenticated(raw_items, read.counts)
        except TransientError as error:  # the clientState lookup: nothing ran yet
            if not last_attempt:
                return _Read(received_at, "failed")
            return _Read(received_at, await self._park_malformed(event, received_at, error.message))
        return read

    async def _run_group(self, group: list[_Read], last_attempt: bool) -> str:
        """The items of events enqueued in one identity window, as few envelopes as the limits allow: the
        fallback identity depends only on the window, so grouping changes no event's id, and the processor
        batches its Storage work per envelope. Received at the group's earliest enqueue time."""
        received_at = min(one.received_at for one in group)
        work = [(self._changes, NOTIFICATIONS_QUEUE, envelope)
                for envelope in self._envelopes(received_at, [i for one in group for i in one.changes])]  # fmt: skip
        work += [(self._lifecycle, LIFECYCLE_QUEUE, envelope)
                 for envelope in self._envelopes(received_at, [i for one in group for i in one.lifecycle])]  # fmt: skip

        async def run(job: tuple[EnvelopeProcessor, str, str]) -> tuple[str, str, str] | None:
            processor, queue, envelope = job
            try:
                await processor.process(envelope)
            except TransientError as error:
                return queue, envelope, error.message
            return None

        failed = [f for f in await gather_bounded(work, self._concurrency, run) if f is not None]
        if not failed:
            return "processed"
        if not last_attempt:
            log.warning("%d hub events: %s; the batch will be retried", len(group), failed[0][2])
            return "failed"
        return await self._park_failed(failed)

    def _envelopes(self, received_at: datetime, items: list[str]) -> list[str]:
        """``items`` packed into envelopes within the processor's limits (item count and size)."""
        budget, limit = self._limits.max_body_bytes // 2, min(self._items_per_envelope, self._limits.max_items)
        envelopes: list[str] = []
        chunk: list[str] = []
        size = 0
        for item in items:
            if chunk and (len(chunk) >= limit or size + len(item) > budget):
                envelopes.append(encode_envelope(received_at, chunk))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item.encode("utf-8"))
        if chunk:
            envelopes.append(encode_envelope(received_at, chunk))
        return envelopes

    async def _authenticated(self, raw_items: list[Any], counts: Counter[str]) -> tuple[list[str], list[str]]:
        """(change items, lifecycle items) as JSON, clientState checked; malformed items go along unchecked,
        for the processors to poison (once, with the reason)."""
        parsed, malformed = [], []
        for raw in raw_items:
            if is_validation_item(raw):
                counts["validation"] += 1
                continue
            try:
                parsed.append(parse_item(raw, self._limits))
            except InvalidInputError:
                malformed.append(raw)
        secrets = await self._registry.client_states({n.subscription_id for n in parsed})
        changes = [_json(raw) for raw in malformed]
        lifecycle: list[str] = []
        for item in parsed:
            if not client_state_matches(item.client_state, secrets.get(item.subscription_id)):
                counts["refused"] += 1
                continue
            is_change = isinstance(item, ChangeNotification)
            (changes if is_change else lifecycle).append(_json(item.to_wire()))
            counts["changes" if is_change else "lifecycle"] += 1
        return changes, lifecycle

    async def _park_malformed(self, event: HubEvent, received_at: datetime, reason: str) -> str:
        """The whole event in ``graph-eventhub-poison`` with where it was in the hub, once per event."""
        text = event.body.decode("utf-8", "replace")
        raw = {"eventhub": event.describe(), "body": text}
        (parked,) = await poison_items(self._queues, self._marks, EVENTHUB_SOURCE, received_at, [(raw, reason)])
        return "poisoned" if parked else "failed"

    async def _park_failed(self, failed: list[tuple[str, str, str]]) -> str:
        """On the last attempt: each failing envelope into its queue's poison queue (replayable there)."""
        try:
            for queue, envelope, why in failed:
                reason = f"still failing on the hub trigger's last retry: {why}"
                await write_poison(self._queues, queue, envelope, reason)
        except TransientError as error:
            log.warning("could not park failing hub items: %s", error.message)
            return "failed"
        return "poisoned"


@dataclass
class _Read:
    """One event after parsing and the clientState check: its items, or why it has none to run."""

    received_at: datetime
    outcome: str | None = None  # "poisoned" / "failed" when the event ends here
    changes: list[str] = field(default_factory=list)
    lifecycle: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def _window(moment: datetime) -> int:
    """The fallback identity's time window of an enqueue time (``shared.events.model.change_identity``)."""
    return int(moment.timestamp()) // ETAGLESS_WINDOW_SECONDS


_COUNTED = ("processed", "poisoned", "failed", "changes", "lifecycle", "validation", "refused")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
