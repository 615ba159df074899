"""Group commit: the items of concurrent webhook POSTs share queue messages.

Each queue send costs a Storage transaction and, on this 2-core machine, most of a webhook's time under
load. While one flush is in flight, arriving POSTs wait and their items are packed together into the next
flush, so the number of sends follows the flush rate instead of the POST rate. A POST with no company is
flushed at once: batching adds no delay at low load.

Under a steady intake the POSTs rarely overlap a flush (a send takes a few milliseconds), so each POST
would travel alone, ten items per message at 10 per POST, and the processor would pay its per-message
Storage calls for every ten items. ``min_interval`` spaces the flushes: one starts at least that long after
the previous one began, and what arrives meanwhile travels with it. A POST after a quiet spell is flushed at
once, so the wait is paid only under load and is at most ``min_interval``.

A POST is acknowledged only when every message holding one of its items was sent; if any of those sends
fails, that POST fails (the webhook answers 503, Graph redelivers it, dedupe absorbs the duplicate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.events.notifications import encode_envelope

Send = Callable[[str], Awaitable[None]]


@dataclass
class _Waiter:
    received_at: datetime
    items: list[str]
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Message:
    items: list[str] = field(default_factory=list)
    waiters: set[int] = field(default_factory=set)


def pack_waiters(waiters: list[_Waiter], max_text_bytes: int) -> list[tuple[str, set[int]]]:
    """Fill messages with whole items in arrival order; each message names the waiters it carries.

    The envelope's ``received_at`` is the earliest of its waiters' (they are milliseconds apart).
    """
    messages: list[tuple[datetime, _Message]] = []
    size = 0
    for index, waiter in enumerate(waiters):
        for text in waiter.items:
            item_size = len(text.encode("utf-8")) + 1
            if not messages or size + item_size > max_text_bytes:
                messages.append((waiter.received_at, _Message()))
                size = len(encode_envelope(waiter.received_at, []).encode("utf-8"))
            received_at, message = messages[-1]
            message.items.append(text)
            message.waiters.add(index)
            messages[-1] = (min(received_at, waiter.received_at), message)
            size += item_size
    return [(encode_envelope(at, m.items), m.waiters) for at, m in messages]


class GroupCommit:
    """``await persist(received_at, items)`` returns once the items are in the queue (or raises)."""

    def __init__(self, send: Send, max_text_bytes: int, send_timeout: float = 10.0, min_interval: float = 0.0) -> None:
        self._send = send
        self._send_timeout = send_timeout  # a stuck send must not hold every later POST
        self._max_text_bytes = max_text_bytes
        self._min_interval = min_interval
        self._last_flush = float("-inf")  # loop time the previous flush began
        self._pending: list[_Waiter] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def persist(self, received_at: datetime, items: list[str]) -> int:
        """Queue the items with whoever else is waiting; the number of messages they travelled in."""
        if not items:
            return 0
        waiter = _Waiter(received_at, items)
        # A caller that gave up (timeout) no longer reads its future: mark a late failure as retrieved.
        waiter.done.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._pending.append(waiter)
        if not self._flushing:
            self._flushing = True
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Shielded: a caller that gives up (timeout) must not cancel a flush that carries other POSTs.
        return await asyncio.shield(waiter.done)

    async def _drain(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while self._pending:
                wait = self._last_flush + self._min_interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # later POSTs join this flush meanwhile
                batch, self._pending = self._pending, []
                self._last_flush = loop.time()
                await self._flush(batch)
        finally:
            self._flushing = False

    async def _bounded(self, text: str) -> None:
        async with asyncio.timeout(self._send_timeout):
            await self._send(text)

    async def _flush(self, batch: list[_Waiter]) -> None:
        try:
            messages = pack_waiters(batch, self._max_text_bytes)
            results = await asyncio.gather(*(self._bounded(text) for text, _ in messages), return_exceptions=True)
        except Exception as error:  # packing failed: nobody's items were sent
            for waiter in batch:
                if not waiter.done.done():
                    waiter.done.set_exception(error)
            return
        carried = [0] * len(batch)
        failed: dict[int, BaseException] = {}
        for (_, indexes), result in zip(messages, results, strict=True):
            for index in indexes:
                carried[index] += 1
                if isinstance(result, BaseException):
                    failed.setdefault(index, result)
        for index, waiter in enumerate(batch):
            if waiter.done.done():
                continue
            if index in failed:
                waiter.done.set_exception(failed[index])
            else:
                waiter.done.set_result(carried[index])
