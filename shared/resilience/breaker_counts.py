"""One breaker's outcome counting on this instance: count locally, write the instance's shard row, and sum
every instance's shard rows to decide whether the breaker trips.

Each instance writes only its own row (its running totals, so a repeated write cannot double-count) at
most about once per ``flush_interval_seconds``, and sooner when its own counts already meet a trip rule.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from shared.resilience.breaker_policy import BreakerPolicy, Outcome
from shared.resilience.breaker_rows import ShardCounts, Totals, window_totals
from shared.resilience.breaker_store import BreakerStore, Row, StoreUnavailable

Trip = Callable[[int], Awaitable[None]]
"""Opens the breaker if it still is in the given generation (the state machine's conditional write)."""


class OutcomeCounter:
    """This instance's counts for the current generation of one breaker, and the trip evaluation."""

    def __init__(
        self,
        store: BreakerStore,
        partition: str,
        policy: BreakerPolicy,
        *,
        instance_id: str,
        local_clock: Callable[[], float],
        trip: Trip,
    ) -> None:
        self._store = store
        self._pk = partition  # the breaker's shards partition: one row per instance
        self._policy = policy
        self._instance = instance_id
        self._local = local_clock
        self._trip = trip
        self._counts = ShardCounts(generation=0)
        self._flush_lock = asyncio.Lock()
        self._last_flush = local_clock()
        self._last_eager_flush = -math.inf

    def restart(self, generation: int) -> None:
        """Counts belong to one period: a new generation starts from zero."""
        if generation != self._counts.generation:
            self._counts = ShardCounts(generation=generation)

    async def record(self, generation: int, outcome: Outcome) -> None:
        """Count one outcome of a call admitted under ``generation``. Raises ``StoreUnavailable``."""
        counts = self._counts
        if outcome is Outcome.IGNORE or generation != counts.generation:
            return  # outcomes admitted under an older state row belong to a period already decided
        now = self._store.now()
        bucket = counts.buckets.setdefault(int(now // self._policy.bucket_seconds), [0, 0])
        if outcome is Outcome.SUCCESS:
            bucket[0] += 1
            counts.last_success_at = now
            counts.streak.clear()
        else:
            bucket[1] += 1
            counts.streak = [*counts.streak[-(self._policy.consecutive_failures - 1) :], now]
            counts.unevaluated = True
        counts.dirty = True
        local = self._local()
        if local - self._last_flush >= self._policy.flush_interval_seconds:
            await self.flush(wait=False)
        elif (
            outcome is Outcome.FAILURE
            and local - self._last_eager_flush >= self._policy.flush_interval_seconds / 10
            and self._trips(window_totals([counts.to_values(now)], counts.generation, now, self._policy))
        ):
            # This instance alone has seen enough to trip: write and evaluate now rather than at the next
            # interval (at most ten times per interval, should the other instances' successes outweigh it).
            self._last_eager_flush = local
            await self.flush(wait=True)

    async def flush(self, *, wait: bool) -> None:
        """Write pending counts and evaluate them if a failure came in since. Raises ``StoreUnavailable``."""
        if self._flush_lock.locked() and not wait:
            return  # a flush is under way; what we just counted goes with the next one
        async with self._flush_lock:
            counts = self._counts
            if not counts.dirty:
                return
            now = self._store.now()
            horizon = int((now - self._policy.window_seconds) // self._policy.bucket_seconds)
            for bucket in [b for b in counts.buckets if b <= horizon]:
                del counts.buckets[bucket]
            counts.dirty = False
            self._last_flush = self._local()
            try:
                await self._store.upsert(self._pk, self._instance, counts.to_values(self._store.now()))
            except StoreUnavailable:
                counts.dirty = True
                raise
            if counts.unevaluated:
                counts.unevaluated = False
                await self._evaluate(counts.generation)

    async def _evaluate(self, generation: int) -> None:
        """Sum every instance's counts for this generation and trip if a rule says so."""
        now = self._store.now()
        rows = await self._store.scan(self._pk)
        await self._sweep(rows, now)
        if self._trips(window_totals([row.values for row in rows], generation, now, self._policy)):
            await self._trip(generation)

    def _trips(self, totals: Totals) -> bool:
        return self._policy.trips(totals.calls, totals.failures, totals.streak)

    async def _sweep(self, rows: list[Row], now: float) -> None:
        """Delete shard rows of instances gone for ten windows (Table Storage has no TTL)."""
        for row in rows:
            if float(row.values["UpdatedAt"]) < now - 10 * self._policy.window_seconds:
                await self._store.delete(self._pk, row.key, row.etag)
