"""A request budget for delta reads: a token bucket that also listens to Graph.

Initial syncs and resyncs (the directory mirror's rounds, the mail catch-up after a gap or a 410) are the
largest bursts the app makes, so every delta page request first takes a token (``GRAPH_RATE_LIMIT``:
``requests/seconds``; one bucket per process, shared by both). Each kind of round runs under a lease, one at
a time across instances. On top of the bucket:

- ``Retry-After`` on a throttled answer (429/503) stops the round's requests until it has passed (the
  gateway's retry waits as well; this keeps the *next* pages from landing on a throttled service);
- ``x-ms-throttle-limit-percentage`` (sent by the directory once an app used more than 0.8 of its limit,
  values 0.8 to 1.8) halves the rate at 0.8 and again per tenth above it, so a round backs off before it is throttled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

THROTTLE_PERCENTAGE = "x-ms-throttle-limit-percentage"


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``seconds`` (the bucket holds at most ``requests`` tokens); ``GRAPH_RATE_LIMIT``."""

    requests: int
    seconds: float


class RequestBudget:
    """``await acquire()`` before each request; ``observe(status, headers)`` after each answer."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_retry_after: float = 60.0,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._max_retry_after = max_retry_after
        self._tokens = float(limit.requests)
        self._refilled = clock()
        self._resume_at = 0.0
        self.slowdown = 1.0  # the rate is divided by this (Graph says we are near a limit)
        self.waited = 0.0  # seconds spent waiting (for the benchmark and logs)

    def _refill(self) -> None:
        now = self._clock()
        rate = self.limit.requests / self.limit.seconds / self.slowdown
        self._tokens = min(float(self.limit.requests), self._tokens + (now - self._refilled) * rate)
        self._refilled = now

    async def acquire(self) -> None:
        """Wait for a token (and for a Retry-After to pass)."""
        while True:
            now = self._clock()
            if now < self._resume_at:
                await self._wait(self._resume_at - now)
                continue
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return
            rate = self.limit.requests / self.limit.seconds / self.slowdown
            await self._wait((1 - self._tokens) / rate)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer: Retry-After on 429/503, the throttle percentage on any answer."""
        if status in (429, 503):
            try:
                delay = float(headers.get("retry-after", ""))
            except ValueError:
                delay = 0.0
            if delay > 0:
                self._resume_at = max(self._resume_at, self._clock() + min(delay, self._max_retry_after))
        try:
            used = float(headers.get(THROTTLE_PERCENTAGE, ""))
        except ValueError:
            used = 0.0
        self._refill()  # tokens earned so far keep the old rate
        self.slowdown = 2.0 ** min(10.0, (used - 0.8) * 10 + 1) if used >= 0.8 else 1.0

    async def _wait(self, seconds: float) -> None:
        self.waited += seconds
        await self._sleep(seconds)
