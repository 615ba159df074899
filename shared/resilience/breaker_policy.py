"""What a breaker is told: its tunables (``BreakerPolicy``) and how a call's result counts (``Outcome``).

Everything here is pure: no store, no clock, no I/O, so the rules can be read and tested on their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from shared.errors import (
    CircuitOpenError,
    PermanentError,
    ThrottledError,
    UnavailableError,
)
from shared.resilience.limits import ConcurrencyLimitedError

StorageOutagePolicy = Literal["fail_open", "fail_closed"]
"""What a breaker does while its store is unreachable (the same literals as the app's setting)."""


class Outcome(Enum):
    """How a call's result counts: against the dependency, for it, or not at all."""

    SUCCESS = "success"
    FAILURE = "failure"
    IGNORE = "ignore"


Classifier = Callable[[BaseException | None], Outcome]


def default_classifier(error: BaseException | None) -> Outcome:
    """Throttling, unavailability and timeouts are the dependency's failures; a permanent error (404,
    403, ...) proves it answered; our own refusals (an open breaker, a local concurrency limit: the
    dependency was never asked) and unknown errors (bugs, bad input) say nothing."""
    if error is None:
        return Outcome.SUCCESS
    if isinstance(error, CircuitOpenError | ConcurrencyLimitedError):
        return Outcome.IGNORE
    if isinstance(error, ThrottledError | UnavailableError | TimeoutError):
        return Outcome.FAILURE
    if isinstance(error, PermanentError):
        return Outcome.SUCCESS
    return Outcome.IGNORE


@dataclass(frozen=True)
class BreakerPolicy:
    """Tunables shared by every breaker of a registry.

    - ``failure_ratio`` (0.5) over ``window_seconds`` (30), once at least ``min_calls`` (20) were counted.
    - ``consecutive_failures`` (5): trips on that many failures in a row within the window, with no
      success anywhere in between (the low-traffic rule, where ``min_calls`` is never reached).
    - ``open_base_seconds`` (10) * 2^(trips-1), at most ``open_max_seconds`` (300): longer each time the
      probe fails; a successful probe resets it.
    - ``probe_lease_seconds`` (10): how long a probe's lease lasts without renewal, i.e. how long a crashed
      prober blocks the others; the live prober renews it every third of that. Keep it well above
      ``storage_timeout_seconds`` so a renewal can land in time.
    - ``probe_timeout_seconds`` (30): the longest a probe may run (pass the caller's own bound on one
      attempt); a probe still running then is cancelled and counts as a failure, so a hung probe cannot
      keep the lease renewed forever.
    - ``state_cache_seconds`` (1): staleness accepted for the state row, i.e. how late an instance may
      notice that another one tripped or closed the breaker.
    - ``flush_interval_seconds`` (1) and ``bucket_seconds`` (1): how often counts are written and their
      time resolution. An instance flushes sooner when its own counts already meet a trip rule.
    - ``storage_outage`` (fail_open), ``storage_timeout_seconds`` (2), ``storage_retry_seconds`` (5):
      behaviour while the store is unreachable, the bound on each store call, and when to try it again.
    """

    failure_ratio: float = 0.5
    min_calls: int = 20
    window_seconds: float = 30.0
    consecutive_failures: int = 5
    open_base_seconds: float = 10.0
    open_max_seconds: float = 300.0
    probe_lease_seconds: float = 10.0
    probe_timeout_seconds: float = 30.0
    state_cache_seconds: float = 1.0
    flush_interval_seconds: float = 1.0
    bucket_seconds: float = 1.0
    storage_outage: StorageOutagePolicy = "fail_open"
    storage_timeout_seconds: float = 2.0
    storage_retry_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.min_calls < 1 or self.consecutive_failures < 1:
            raise ValueError("min_calls and consecutive_failures must be at least 1")
        for name in (
            "window_seconds",
            "open_base_seconds",
            "open_max_seconds",
            "probe_lease_seconds",
            "probe_timeout_seconds",
            "bucket_seconds",
            "storage_timeout_seconds",
            "storage_retry_seconds",
        ):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        for name in ("state_cache_seconds", "flush_interval_seconds"):  # 0 disables caching / batching
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if self.storage_outage not in ("fail_open", "fail_closed"):
            raise ValueError("storage_outage must be fail_open or fail_closed")

    def open_seconds(self, trips: int) -> float:
        """How long the breaker stays open after its ``trips``-th trip in a row."""
        return min(self.open_max_seconds, self.open_base_seconds * 2.0 ** min(max(trips - 1, 0), 64))

    def trips(self, calls: int, failures: int, streak: int) -> bool:
        """Whether window counts (``streak``: failures since the latest success) meet a trip rule."""
        by_ratio = calls >= self.min_calls and failures >= self.failure_ratio * calls
        return by_ratio or streak >= self.consecutive_failures
