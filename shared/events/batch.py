"""The skeleton both queue processors share: one message of many items, every item tried once per delivery.

Both queues (changes, lifecycle) carry the same envelope and fail the same way, so the shape lives here once:

- a *malformed message* cannot get better by retrying: it is written to ``<queue>-poison`` with the reason
  and the delivery ends normally (the host would otherwise redeliver it ``maxDequeueCount`` times);
- a *bad item* (malformed, or of the other queue's kind) is poisoned alone, as a one-item envelope a replay
  can process, once however often the message is redelivered (a dedupe marker per item, ``poison.py``);
  if that write fails the item counts as ``failed`` and is retried with the message;
- the other items run at most ``item_concurrency`` at once, each ending in an outcome name (a processor
  may instead take them all at once, ``_run_accepted``, to batch their Storage work);
- a message's work (parsing included) holds one slot of the process's ``BackgroundGate`` when given, so
  processing yields to webhook acknowledgements (``shared/background.py``);
- once all were tried, any ``failed`` item raises the processor's ``BatchFailedError`` so the host
  redelivers the message.

A processor subclasses ``BatchProcessor`` and supplies what differs: the kind of item it accepts, what to do
with one, its result type (which names the outcomes it counts) and its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar

from shared.background import BackgroundGate
from shared.concurrency import gather_bounded
from shared.errors import InvalidInputError, TransientError
from shared.events.dedupe import DedupeStore
from shared.events.notifications import (
    DEFAULT_LIMITS,
    Notification,
    NotificationLimits,
    QueueEnvelope,
    message_text,
    parse_envelope,
    parse_item,
)
from shared.events.poison import BadItem, poison_items, write_poison
from shared.storage import Queues

N = TypeVar("N", bound=Notification)
R = TypeVar("R", bound="BatchResult")


@dataclass(frozen=True)
class BatchConfig:
    """The queue a processor reads (its poison queue is derived from it), its item concurrency and limits."""

    queue: str
    item_concurrency: int
    limits: NotificationLimits = field(default=DEFAULT_LIMITS)


@dataclass(frozen=True)
class BatchResult:
    """What every processor counts; subclasses add their own outcomes."""

    items: int = 0
    poisoned: int = 0
    failed: int = 0
    message_poisoned: bool = False
    # A subclass's own fields count the item outcomes of the same name, unless renamed here (field → outcome).
    outcome_names: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def tally(cls, items: int, outcomes: Counter[str]) -> Self:
        """The result for one message's outcome counts."""
        own = {f.name for f in fields(cls)} - {f.name for f in fields(BatchResult)}
        counts: dict[str, Any] = {name: outcomes[cls.outcome_names.get(name, name)] for name in own}
        return cls(items=items, poisoned=outcomes["poisoned"], failed=outcomes["failed"], **counts)


class BatchFailedError(TransientError, Generic[R]):
    """Some items are left to run: raising makes the host redeliver the message."""

    left_to_run = "items failed"  # how the subclass says what is left, in "<failed> of <items> ..."

    def __init__(self, result: R, dequeue_count: int) -> None:
        super().__init__(
            f"{result.failed} of {result.items} {self.left_to_run} (attempt {dequeue_count})", service="events"
        )
        self.result = result


class BatchProcessor(ABC, Generic[N, R]):
    """``_process_batch(body, dequeue_count)``: parse, poison what is bad, run the rest bounded, count, raise."""

    def __init__(
        self,
        queues: Queues,
        config: BatchConfig,
        *,
        result: type[R],
        failure: type[BatchFailedError[R]],
        log: logging.Logger,
        poison_marks: DedupeStore | None = None,
        gate: BackgroundGate | None = None,
    ) -> None:
        self._queues = queues
        self._poison_marks = poison_marks  # makes each bad item's poison write happen once
        self._batch_config = config
        self._result = result  # what ``_process_batch`` returns
        self._failure = failure  # what it raises when items are left to run
        self._log = log
        self._gate = gate  # messages wait here while webhook acknowledgements need the loop

    @abstractmethod
    def _accept(self, notification: Notification) -> N:
        """The notification if this queue handles its kind; raise ``InvalidInputError`` (poisoned) if not."""

    @abstractmethod
    async def _handle(self, notification: N, envelope: QueueEnvelope) -> str:
        """Run one well-formed item; its outcome name (``"failed"`` retries the message)."""

    def _observe(self, outcomes: Counter[str]) -> None:
        """Called with the counts before a failure is raised (metrics); nothing by default."""

    async def _process_batch(self, body: bytes | str, dequeue_count: int) -> R:
        config = self._batch_config
        async with self._gate.slot() if self._gate is not None else contextlib.nullcontext():
            try:
                envelope = parse_envelope(body, config.limits)
            except InvalidInputError as error:
                await write_poison(self._queues, config.queue, message_text(body), error.message)
                return self._result(message_poisoned=True)
            if self._gate is not None and dequeue_count == 1:  # a retry's delay is its visibility timeout
                self._gate.on_delay((datetime.now(UTC) - envelope.received_at).total_seconds())
            outcomes = Counter(await self._run_items(envelope))
        result = self._result.tally(len(envelope.items), outcomes)
        self._log.info("processed a %s message (attempt %d): %s", config.queue, dequeue_count, result)
        self._observe(outcomes)
        if result.failed:
            raise self._failure(result, dequeue_count)
        return result

    async def _run_items(self, envelope: QueueEnvelope) -> list[str]:
        """Every item's outcome: bad ones poisoned (once), the rest run by ``_run_accepted``."""
        config = self._batch_config
        accepted: list[N] = []
        bad: list[BadItem] = []
        for raw in envelope.items:
            try:
                accepted.append(self._accept(parse_item(raw, config.limits)))
            except InvalidInputError as error:
                bad.append((raw, error.message))
        parked, ran = await asyncio.gather(
            poison_items(self._queues, self._poison_marks, config.queue, envelope.received_at, bad),
            self._run_accepted(accepted, envelope),
        )
        return ["poisoned" if ok else "failed" for ok in parked] + list(ran)

    async def _run_accepted(self, accepted: list[N], envelope: QueueEnvelope) -> Sequence[str]:
        """The well-formed items' outcomes; by default ``_handle`` each, ``item_concurrency`` at once."""

        async def one(notification: N) -> str:
            return await self._handle(notification, envelope)

        return await gather_bounded(accepted, self._batch_config.item_concurrency, one)
