"""Resilience for calls to any dependency: a Table-backed circuit breaker shared by all instances, a
Retry-After-aware retry policy and per-key concurrency limits. Generic: nothing here knows Graph or the
app's metrics; breakers report to ``BreakerListener``s and retries to an ``on_retry`` callback.

Compose them per attempt, retry outermost, so an open breaker stops the retries at once::

    async with limiter.slot(mailbox):
        user = await call_with_retry(lambda: breakers.get("graph").call(fetch), retry_policy)
"""

from shared.resilience.breaker import Breaker, BreakerRegistry
from shared.resilience.breaker_events import BreakerListener
from shared.resilience.breaker_policy import BreakerPolicy, Classifier, Outcome, default_classifier
from shared.resilience.breaker_rows import BreakerSnapshot, State
from shared.resilience.breaker_store import (
    BreakerStore,
    MemoryBreakerStore,
    ServerClock,
    StoreStats,
    TableBreakerStore,
)
from shared.resilience.limits import KeyedLimiter
from shared.resilience.retry import RetryPolicy, call_with_retry, is_testing, parse_retry_after, set_testing

__all__ = [
    "Breaker",
    "BreakerListener",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerStore",
    "Classifier",
    "KeyedLimiter",
    "MemoryBreakerStore",
    "Outcome",
    "RetryPolicy",
    "ServerClock",
    "State",
    "StoreStats",
    "TableBreakerStore",
    "call_with_retry",
    "default_classifier",
    "is_testing",
    "parse_retry_after",
    "set_testing",
]
