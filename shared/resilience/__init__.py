"""Resilience for calls to any dependency: a Table-backed circuit breaker shared by all instances, a
Retry-After-aware retry policy and per-key concurrency limits. Generic: nothing here knows Graph.

Compose them per attempt, retry outermost, so an open breaker stops the retries at once::

    async with limiter.slot(mailbox):
        user = await call_with_retry(lambda: breakers.get("graph").call(fetch), retry_policy)
"""

from shared.resilience.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerRegistry,
    BreakerSnapshot,
    Classifier,
    Outcome,
    State,
    default_classifier,
)
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
