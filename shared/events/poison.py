"""Poison queues: write what cannot be processed, list it, and replay it once the cause is fixed.

Two writers share ``<queue>-poison``. The Functions host moves a message there as-is after
``maxDequeueCount`` failed attempts; our processors write malformed messages (and single bad items)
themselves, wrapped with a reason: ``{"poisoned": {"reason", "queue", "at"}, "message": "<original>"}``
(or the original alone when the wrapper would exceed a queue message; the reason is then only logged).
Replay sends the original text back to its queue and deletes the poison copy only after that send
succeeded, so a crash mid-replay duplicates at worst (the dedupe markers absorb duplicates).

A bad item is written once, however often its message is delivered (its neighbours may fail and make
the host redeliver it): ``poison_items`` claims a dedupe marker named after the queue and the item's
canonical JSON before writing, and marks it done after; a redelivery finds it done and writes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import StorageUnavailableError
from shared.events.dedupe import DedupeStore
from shared.events.notifications import encode_envelope
from shared.names import POISON_SUFFIX
from shared.storage import QUEUE_MESSAGE_MAX_TEXT_BYTES, OutageWait, Queues, hashed_key
from shared.telemetry import get_logger

log = get_logger("events.poison")

MAX_REASON_CHARS = 500
POISON_MARKER = "poison"  # the dedupe "handler" name of a poisoned item's marker
POISON_LEASE_SECONDS = 30.0
PEEK_LIMIT = 32  # the Queue service returns at most 32 messages per peek/receive


def poison_queue_name(queue: str) -> str:
    """The host's naming rule for a queue's poison queue."""
    return f"{queue}{POISON_SUFFIX}"


@dataclass(frozen=True)
class PoisonMessage:
    """A message in a poison queue: the original text, and our reason when we wrote it."""

    id: str
    inserted_on: datetime | None
    original: str
    reason: str | None


def wrap(original: str, queue: str, reason: str) -> str:
    """The poison-queue text for ``original``: its reason travels with it."""
    poisoned = {"reason": reason[:MAX_REASON_CHARS], "queue": queue, "at": datetime.now(UTC).isoformat()}
    return json.dumps({"poisoned": poisoned, "message": original}, separators=(",", ":"), ensure_ascii=False)


def unwrap(text: str) -> tuple[str, str | None]:
    """(original text, reason) of a poison message, whichever writer put it there."""
    try:
        document: Any = json.loads(text)
    except ValueError:
        return text, None
    if isinstance(document, dict) and isinstance(document.get("poisoned"), dict):
        original, reason = document.get("message"), document["poisoned"].get("reason")
        if isinstance(original, str):
            return original, reason if isinstance(reason, str) else None
    return text, None


async def write_poison(queues: Queues, queue: str, original: str, reason: str) -> None:
    """Park ``original`` (from ``queue``) in its poison queue; ``StorageUnavailableError`` if that failed."""
    text = wrap(original, queue, reason)
    if len(text.encode("utf-8")) > QUEUE_MESSAGE_MAX_TEXT_BYTES:
        text = original  # the wrapper would not fit one message: keep the original, the reason is logged
    await (await queues.get(poison_queue_name(queue))).send_message(text)
    log.warning("poisoned a message from %s: %s", queue, reason[:MAX_REASON_CHARS])


async def poison_item(queues: Queues, queue: str, received_at: datetime, raw: Any, reason: str) -> bool:
    """Park one bad item as a one-item envelope (a replay after a fix processes it like any message).
    False if the poison queue could not be written: the caller must then retry, never drop."""
    alone = encode_envelope(received_at, [json.dumps(raw, separators=(",", ":"))])
    try:
        await write_poison(queues, queue, alone, reason)
    except StorageUnavailableError:
        return False
    return True


def poison_identity(queue: str, raw: Any) -> str:
    """The marker identity of a bad item: the same item from the same queue, whichever message held it."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "poison-" + hashed_key(f"{queue}\n{canonical}")


BadItem = tuple[Any, str]  # (the raw item, why it is bad)


async def poison_items(
    queues: Queues,
    marks: DedupeStore | None,
    queue: str,
    received_at: datetime,
    bad: Sequence[BadItem],
    wait: OutageWait | None = None,
) -> list[bool]:
    """Park each bad item once (see the module docstring); per item, whether it is parked (now or by an
    earlier delivery). False: not parked, the caller must retry (an outage, or another copy is writing
    it right now). Without ``marks`` every call writes (at least once)."""
    if not bad:
        return []
    if marks is None:
        return list(await asyncio.gather(*(poison_item(queues, queue, received_at, r, why) for r, why in bad)))
    identities = [poison_identity(queue, raw) for raw, _ in bad]
    try:
        claims = await marks.claim_many([(i, {POISON_MARKER: POISON_LEASE_SECONDS}) for i in identities])
    except StorageUnavailableError:
        return [False] * len(bad)

    async def one(identity: str, item: BadItem) -> bool:
        claim = claims[(identity, POISON_MARKER)]
        if claim.state != "acquired":
            return claim.state == "done"
        if not await poison_item(queues, queue, received_at, *item):
            await marks.release(claim)
            return False
        return True

    parked = await asyncio.gather(*(one(i, item) for i, item in zip(identities, bad, strict=True)))
    written = [claims[(i, POISON_MARKER)] for i, ok in zip(identities, parked, strict=True) if ok]
    written = [c for c in written if c.state == "acquired"]
    if written:
        # Retried through an outage: a marker left "running" lets a delivery after its lease write it again.
        try:
            await (wait or OutageWait()).run(lambda: marks.complete(written))
        except StorageUnavailableError as error:
            log.warning("poisoned %d items but could not record it: %s", len(written), error.message)
    return list(parked)


async def peek_poison(queues: Queues, queue: str, limit: int = PEEK_LIMIT) -> list[PoisonMessage]:
    """Up to ``limit`` (≤ 32) messages of ``queue``'s poison queue, without hiding or removing them."""
    poison = await queues.get(poison_queue_name(queue))
    messages = await poison.peek_messages(max_messages=max(1, min(limit, PEEK_LIMIT)))
    return [_describe(m.id, m.inserted_on, m.content) for m in messages]


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    failed: int


async def replay_poison(queues: Queues, queue: str, *, limit: int = 1000, visibility_timeout: int = 60) -> ReplayResult:
    """Move up to ``limit`` poison messages back to ``queue`` (send first, then delete)."""
    poison = await queues.get(poison_queue_name(queue))
    target = await queues.get(queue)
    replayed = failed = 0
    while replayed + failed < limit:
        wanted = min(PEEK_LIMIT, limit - replayed - failed)
        batch = [
            m
            async for m in poison.receive_messages(
                messages_per_page=wanted, max_messages=wanted, visibility_timeout=visibility_timeout
            )
        ]
        if not batch:
            break
        for message in batch:
            original, _ = unwrap(message.content)
            try:
                await target.send_message(original)
                await poison.delete_message(message)
            except StorageUnavailableError as error:
                failed += 1  # stays in (or reappears in) the poison queue after the visibility timeout
                log.warning("could not replay poison message %s: %s", message.id, error.message)
                continue
            replayed += 1
    return ReplayResult(replayed, failed)


def _describe(message_id: str, inserted_on: datetime | None, content: str) -> PoisonMessage:
    original, reason = unwrap(content)
    return PoisonMessage(message_id, inserted_on, original, reason)
