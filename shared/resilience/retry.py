"""Retry transient upstream failures, honouring ``Retry-After`` within a per-call time budget.

Only ``ThrottledError`` and ``UnavailableError`` are retried. ``CircuitOpenError`` is transient too, but
retrying it would just queue callers behind a breaker that already said no; permanent errors, invalid
input and unknown exceptions (bugs) fail at once. The last error is re-raised unchanged, so the API layer
still sees its ``retry_after`` and answers 503 with it.

Waits: the server's ``Retry-After`` when it sent one (capped by ``max_retry_after_seconds``), else
exponential backoff with full jitter. A retry happens only if its wait fits in what remains of the
budget: a caller told "come back in 120 s" by Graph learns it now instead of after a useless sleep.

Like stamina, ``set_testing(True)`` turns sleeps into no-ops while waits are still computed, reported to
``on_retry`` and charged to the budget, so tests stay fast and can assert the waits.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from shared.errors import ThrottledError, TransientError, UnavailableError

T = TypeVar("T")

RETRYABLE: tuple[type[TransientError], ...] = (ThrottledError, UnavailableError)
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
_DELTA_SECONDS = re.compile(r"[+-]?\d{1,15}(?:\.\d{1,9})?")

OnRetry = Callable[[TransientError, int, float], None]
"""Called before each retry with the error, the attempt that failed (1-based) and the wait in seconds."""


@dataclass(frozen=True)
class RetryPolicy:
    """Tunables of ``call_with_retry``; the defaults suit one interactive API request.

    - ``max_attempts`` (3): first try included; the Graph SDK already retries inside each attempt, so
      keep this small to bound the product of both layers.
    - ``budget_seconds`` (20.0): wall time a call may spend in attempts and waits before giving up.
    - ``max_retry_after_seconds`` (10.0): the longest ``Retry-After`` we honour by sleeping.
    - ``backoff_base_seconds`` (0.5) / ``backoff_cap_seconds`` (5.0): full jitter draws the wait from
      ``[0, min(cap, base * 2 ** (attempt - 1))]`` when the server gave no hint.
    """

    max_attempts: int = 3
    budget_seconds: float = 20.0
    max_retry_after_seconds: float = 10.0
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("budget_seconds", "max_retry_after_seconds", "backoff_base_seconds", "backoff_cap_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def backoff_ceiling(self, attempt: int) -> float:
        """Upper bound of the jittered wait after failed attempt ``attempt`` (1-based)."""
        exponent = min(attempt - 1, 64)  # 2**64 already exceeds any sane cap; avoids float overflow
        return min(self.backoff_cap_seconds, self.backoff_base_seconds * 2.0**exponent)


_testing = False


def set_testing(testing: bool) -> None:
    """Skip the sleeps between attempts (waits are still computed, reported and budgeted)."""
    global _testing
    _testing = testing


def is_testing() -> bool:
    return _testing


class _Attempts:
    """Per-call wait/stop decisions for tenacity, with the budget charged for real or skipped sleeps."""

    def __init__(self, policy: RetryPolicy, on_retry: OnRetry | None) -> None:
        self.policy = policy
        self.on_retry = on_retry
        self.started = time.monotonic()
        self.skipped_sleep = 0.0

    def remaining(self) -> float:
        return self.policy.budget_seconds - (time.monotonic() - self.started) - self.skipped_sleep

    def wait(self, state: RetryCallState) -> float:
        error = _error(state)
        if error.retry_after is not None:
            return error.retry_after
        return random.uniform(0.0, self.policy.backoff_ceiling(state.attempt_number))

    def stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.policy.max_attempts:
            return True
        hint = _error(state).retry_after
        # The server's own hint decides, never a shortened wait: retrying sooner than asked only earns another
        # 429. A hint longer than we are willing to wait, or than the budget has left, ends the call now.
        if hint is not None and hint > self.policy.max_retry_after_seconds:
            return True
        needed = max(state.upcoming_sleep, hint if hint is not None else 0.0)
        return needed >= self.remaining()

    async def sleep(self, seconds: float) -> None:
        if _testing:
            self.skipped_sleep += seconds
            return
        await asyncio.sleep(seconds)

    def before_sleep(self, state: RetryCallState) -> None:
        if self.on_retry is not None:
            self.on_retry(_error(state), state.attempt_number, state.upcoming_sleep)


def _error(state: RetryCallState) -> TransientError:
    assert state.outcome is not None  # tenacity consults wait/stop only after an attempt
    error = state.outcome.exception()
    assert isinstance(error, TransientError)  # retry_if_exception_type(RETRYABLE) let only these through
    return error


async def call_with_retry(fn: Callable[[], Awaitable[T]], policy: RetryPolicy, *, on_retry: OnRetry | None = None) -> T:
    """Await ``fn()`` until it succeeds, a non-retryable error occurs, or attempts/budget run out.

    ``fn`` is called anew for each attempt (pass ``lambda: breaker.call(...)`` so every attempt goes
    through the breaker). The error of the last attempt is raised as is.
    """
    attempts = _Attempts(policy, on_retry)
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(RETRYABLE),
        wait=attempts.wait,
        stop=attempts.stop,
        sleep=attempts.sleep,
        before_sleep=attempts.before_sleep,
        reraise=True,
    )

    async def attempt() -> T:
        # tenacity awaits only coroutine *functions*; a lambda returning a coroutine would not be awaited.
        return await fn()

    return await retrying(attempt)


def parse_retry_after(value: str | None, now: datetime, *, cap: float = MAX_RETRY_AFTER_SECONDS) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Returns None for a missing or malformed value (including NaN/inf/exponents), 0 for a negative delay
    or a date in the past, and at most ``cap`` for absurdly large values. ``now`` must be timezone-aware.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # RFC 850/asctime forms carry no zone; HTTP dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)
