"""How settings become policies: the tunables of the cache, the breakers, retries and Graph attempts.

Pure functions of ``Settings``, used by the wiring (``shared/wiring.py``) when it builds the services and by
tests that build one service alone; they import the generic packages' policy types only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.cache import CachePolicy
    from shared.resilience.breaker import BreakerPolicy
    from shared.resilience.retry import RetryPolicy


def cache_policy(current: Settings) -> CachePolicy:
    """Users and message pages get their own freshness; stale-and-refresh runs up to 4x the TTL."""
    from shared.cache import CachePolicy, Freshness
    from shared.directory import ALIASES_NAMESPACE, MESSAGE_NAMESPACE, MESSAGES_NAMESPACE, USERS_NAMESPACE

    def freshness(ttl: float) -> Freshness:
        return Freshness(
            soft_ttl=ttl,
            hard_ttl=4 * ttl,
            max_staleness=current.cache_max_stale_seconds,
            negative_ttl=current.cache_negative_ttl_seconds,
        )

    users = freshness(current.cache_user_ttl_seconds)
    mail = freshness(current.cache_messages_ttl_seconds)
    return CachePolicy(
        l1_max_entries=current.cache_l1_max_entries,
        l1_ttl=current.cache_l1_ttl_seconds,
        generation_ttl=current.cache_l1_ttl_seconds,
        freshness=users,
        namespaces={
            USERS_NAMESPACE: users,
            ALIASES_NAMESPACE: users,
            MESSAGES_NAMESPACE: mail,
            MESSAGE_NAMESPACE: mail,
        },
    )


def graph_attempt_seconds(current: Settings) -> float:
    """The bound on one Graph attempt: the request timeout plus room for a token fetch before it."""
    return current.graph_timeout_seconds + 5


def breaker_policy(current: Settings) -> BreakerPolicy:
    from shared.resilience.breaker import BreakerPolicy

    return BreakerPolicy(
        failure_ratio=current.breaker_failure_ratio,
        min_calls=current.breaker_min_calls,
        window_seconds=current.breaker_window_seconds,
        consecutive_failures=current.breaker_consecutive_failures,
        open_base_seconds=current.breaker_open_seconds,
        open_max_seconds=current.breaker_max_open_seconds,
        storage_outage=current.breaker_storage_outage,
        # The breakers guard Graph calls: a probe is one attempt, plus a second for the breaker's own
        # bound to stay a backstop behind the gateway's.
        probe_timeout_seconds=graph_attempt_seconds(current) + 1,
    )


def retry_policy(current: Settings) -> RetryPolicy:
    from shared.resilience.retry import RetryPolicy

    return RetryPolicy(
        max_attempts=current.retry_max_attempts,
        budget_seconds=current.retry_budget_seconds,
        max_retry_after_seconds=current.retry_max_retry_after_seconds,
    )
