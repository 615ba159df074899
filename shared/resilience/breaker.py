"""A circuit breaker whose state is shared by every instance of the app through a ``BreakerStore``.

States: ``closed`` (calls pass, outcomes are counted), ``open`` (calls are refused with
``CircuitOpenError`` and a ``retry_after``), ``half_open`` (the open period is over: one probe call across
all instances decides, see ``breaker_probe``), and ``isolated`` (forced open by an operator until ``reset``).

The rows and their codec are in ``breaker_rows``, the tunables and the trip rules in ``breaker_policy``;
this module is the state machine: admit a call, count its outcome, trip, decide a probe, and fall back
when the store is unreachable. It reports what happens to ``BreakerListener``s (``breaker_events``).

Each instance keeps the state row for ``state_cache_seconds``: in steady state a call costs no Table
round trip; the instance makes about one state read and one shard write per second per breaker (at most
about once per ``flush_interval_seconds``, sooner when its own counts already meet a trip rule).
All times in rows come from ``store.now()`` (Table service time, see ``breaker_store``).

Should two probes race to decide (a holder paused between its last lease renewal and the state write),
the state row settles it: both writes are conditional on the state row's ETag and on the probed
generation, so the first decision stands and the second sees a newer generation and leaves it.

When the store is unreachable the breaker never lets a Storage error escape ``call``. ``fail_open`` (the
default) keeps serving through an in-process breaker with the same policy (the dependency stays
protected per instance); ``fail_closed`` refuses calls with ``CircuitOpenError``. Either way the store is
tried again after ``storage_retry_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from shared.errors import CircuitOpenError, UnavailableError
from shared.resilience.breaker_counts import OutcomeCounter
from shared.resilience.breaker_events import BreakerListener, BreakerListeners
from shared.resilience.breaker_policy import BreakerPolicy, Classifier, Outcome, default_classifier
from shared.resilience.breaker_probe import WRITE_ATTEMPTS, Lease, ProbeLeases
from shared.resilience.breaker_rows import (
    STATE_ROW,
    BreakerSnapshot,
    State,
    StateRow,
    shards_partition,
    window_totals,
)
from shared.resilience.breaker_store import BreakerStore, MemoryBreakerStore, StoreConflict, StoreUnavailable
from shared.storage import safe_key

# BreakerPolicy is named here too: callers that build breakers import it from this module.
__all__ = ["Breaker", "BreakerContext", "BreakerPolicy", "BreakerRegistry"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Ticket:
    view: StateRow
    probe: Lease | None = None  # set when this call holds the probe lease


@dataclass(frozen=True)
class BreakerContext:
    """What every breaker of one registry shares besides the store and the policy (its fallback too)."""

    instance_id: str
    classify: Classifier = default_classifier
    local_clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # paces the probe lease's renewals
    listener: BreakerListener = field(default_factory=BreakerListener)


class Breaker:
    """One dependency's breaker as seen by this instance. Get it from ``BreakerRegistry.get``."""

    def __init__(self, key: str, store: BreakerStore, policy: BreakerPolicy, context: BreakerContext) -> None:
        self.key = key
        self.policy = policy
        self._store = store
        self._context = context
        self._instance = context.instance_id
        self._local = context.local_clock
        self._listener = context.listener
        self._pk = safe_key(key)
        self._shards_pk = shards_partition(self._pk)
        self._leases = ProbeLeases(key, self._pk, store, policy, instance_id=self._instance, sleep=context.sleep)
        self._view: StateRow | None = None
        self._view_at = -math.inf
        self._refresh = asyncio.Lock()
        self._counter = OutcomeCounter(
            store,
            self._shards_pk,
            policy,
            instance_id=self._instance,
            local_clock=self._local,
            trip=self._trip,
        )
        self._outage_until = -math.inf
        self._store_lost = False
        self._fallback: Breaker | None = None

    # --- calls ------------------------------------------------------------------------------------

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` if the breaker admits it, count its outcome, and return or raise what it did.

        Raises ``CircuitOpenError`` (with ``retry_after`` in seconds, None while isolated) without calling
        ``fn`` when the breaker is open, isolated, or half-open with the probe taken by another caller.
        A probe is cancelled after ``probe_timeout_seconds`` (``TimeoutError``, counted as a failure).
        """
        if self._local() < self._outage_until:
            return await self._call_without_store(fn)
        try:
            ticket = await self._admit()
        except StoreUnavailable as error:
            self._enter_outage(error)
            return await self._call_without_store(fn)
        except CircuitOpenError as refused:
            self._listener.call_rejected(self.key, refused.retry_after)
            raise
        if ticket.probe is not None:
            return await self._probe(ticket, ticket.probe, fn)
        try:
            result = await fn()
        except Exception as error:  # BaseException (cancellation) is not counted; a probe's lease expires
            await self._settle(ticket, self._context.classify(error))
            raise
        await self._settle(ticket, self._context.classify(None))
        return result

    async def _admit(self) -> _Ticket:
        view = await self._state()
        now = self._store.now()
        if view.state is State.ISOLATED:
            raise CircuitOpenError(self.key)
        if view.state is State.OPEN:
            if now < view.open_until:
                raise CircuitOpenError(self.key, retry_after=view.open_until - now)
            return _Ticket(view, probe=await self._leases.take(view.generation, now))
        return _Ticket(view)

    async def _probe(self, ticket: _Ticket, lease: Lease, fn: Callable[[], Awaitable[T]]) -> T:
        """Run the half-open probe under ``probe_timeout_seconds`` while renewing its lease, then decide."""
        heartbeat = asyncio.create_task(self._leases.keep(lease))
        try:
            try:
                async with asyncio.timeout(self.policy.probe_timeout_seconds):
                    result = await fn()
            finally:
                heartbeat.cancel()
                await asyncio.wait([heartbeat])  # no renewal may land after the decision's own renewal
        except Exception as error:  # as in ``call``: a cancelled probe decides nothing, its lease expires
            await self._settle(ticket, self._context.classify(error))
            raise
        await self._settle(ticket, self._context.classify(None))
        return result

    async def _settle(self, ticket: _Ticket, outcome: Outcome) -> None:
        """Record the outcome; store failures are logged and switch to the fallback, never raised."""
        try:
            if ticket.probe is not None:
                await self._finish_probe(ticket.view, ticket.probe, outcome)
            else:
                await self._counter.record(ticket.view.generation, outcome)
        except StoreUnavailable as error:
            self._enter_outage(error)

    async def _finish_probe(self, probed: StateRow, lease: Lease, outcome: Outcome) -> None:
        if outcome is Outcome.IGNORE:  # the probe proved nothing: let the next caller probe at once
            await self._leases.release(lease)
            return
        if not await self._leases.renew(lease):  # the lease lapsed and was taken over: its holder decides
            log.warning("breaker %s: probe outcome dropped, another instance holds the probe now", self.key)
            return
        closing = outcome is Outcome.SUCCESS

        def decide(current: StateRow) -> StateRow | None:
            if current.generation != probed.generation:
                return None  # an operator or another prober decided meanwhile; theirs stands
            now = self._store.now()
            return current.closed(now) if closing else current.opened(now, self.policy)

        view = await self._write_state(decide, probed)
        log.warning("breaker %s: probe %s, now %s", self.key, "succeeded" if closing else "failed", view.state)

    # --- tripping ---------------------------------------------------------------------------------

    async def _trip(self, generation: int) -> None:
        """Open the breaker if it is still closed in ``generation`` (the counter found a trip rule met)."""

        def decide(current: StateRow) -> StateRow | None:
            if current.generation != generation or current.state is not State.CLOSED:
                return None  # another instance tripped it (or an operator acted) first
            return current.opened(self._store.now(), self.policy)

        view = self._view or StateRow(State.CLOSED)
        view = await self._write_state(decide, view)
        if view.generation == generation + 1 and view.state is State.OPEN:
            log.warning("breaker %s: tripped, open for %.1fs", self.key, view.open_until - view.since)

    async def flush(self) -> None:
        """Write this instance's pending counts now (and evaluate them); e.g. before shutdown."""
        if self._local() >= self._outage_until:
            try:
                await self._counter.flush(wait=True)
            except StoreUnavailable as error:
                self._enter_outage(error)

    # --- state row --------------------------------------------------------------------------------

    async def _state(self) -> StateRow:
        """The cached state row, re-read when older than ``state_cache_seconds`` (one read at a time)."""
        if self._view is not None and self._local() - self._view_at < self.policy.state_cache_seconds:
            return self._view
        async with self._refresh:
            if self._view is not None and self._local() - self._view_at < self.policy.state_cache_seconds:
                return self._view
            return await self._read_state()

    async def _read_state(self) -> StateRow:
        view = StateRow.from_row(await self._store.read(self._pk, STATE_ROW))
        if self._store_lost:
            self._store_lost = False
            log.info("breaker %s: store reachable again", self.key)
            self._listener.storage_restored(self.key)
        self._remember(view)
        return view

    def _remember(self, view: StateRow) -> None:
        self._counter.restart(view.generation)
        self._view, self._view_at = view, self._local()
        self._listener.state_observed(self.key, view.state)

    async def _write_state(self, decide: Callable[[StateRow], StateRow | None], current: StateRow) -> StateRow:
        """Apply ``decide`` to the row with an ETag-conditional write; on a conflict re-read and decide
        again. Returns the row as it stands afterwards (ours, or the one that beat us)."""
        for _ in range(WRITE_ATTEMPTS):
            wanted = decide(current)
            if wanted is None:
                return current
            try:
                if current.etag is None:
                    etag = await self._store.insert(self._pk, STATE_ROW, wanted.to_values())
                else:
                    etag = await self._store.replace(self._pk, STATE_ROW, wanted.to_values(), current.etag)
            except StoreConflict:
                current = await self._read_state()
                continue
            written = replace(wanted, etag=etag)
            self._remember(written)
            self._listener.state_changed(self.key, current.state, written.state)
            return written
        log.warning("breaker %s: gave up writing state after %d conflicts", self.key, WRITE_ATTEMPTS)
        return current

    # --- operator actions and status --------------------------------------------------------------

    async def isolate(self) -> None:
        """Force the breaker open for every instance until ``reset``."""
        now = self._store.now()
        await self._operate(lambda row: replace(row, state=State.ISOLATED, generation=row.generation + 1, since=now))

    async def reset(self) -> None:
        """Close the breaker for every instance, restart its counts and its open-duration escalation."""
        await self._operate(lambda row: row.closed(self._store.now()))

    async def _operate(self, change: Callable[[StateRow], StateRow]) -> None:
        """An operator's change applies to whatever the row holds now (re-read on every conflict)."""
        try:
            await self._write_state(change, await self._read_state())
        except StoreUnavailable as error:
            raise UnavailableError(f"breaker store unreachable: {error}", service="breaker-store") from error

    async def snapshot(self) -> BreakerSnapshot:
        """Current shared state and window counts (two store reads: meant for status pages)."""
        if self._local() < self._outage_until:
            return replace(await self._require_fallback().snapshot(), storage="unavailable")
        try:
            view = await self._read_state()
            rows = await self._store.scan(self._shards_pk)
        except StoreUnavailable as error:
            self._enter_outage(error)
            return replace(await self._require_fallback().snapshot(), storage="unavailable")
        now = self._store.now()
        totals = window_totals([row.values for row in rows], view.generation, now, self.policy)
        shown = view.shown(now)
        return BreakerSnapshot(
            key=self.key,
            state=shown,
            since=view.since,
            retry_after=max(view.open_until - now, 0.0) if shown is State.OPEN else None,
            calls=totals.calls,
            failures=totals.failures,
            trips=view.trips,
            total_trips=view.total_trips,
        )

    # --- store outage -----------------------------------------------------------------------------

    def _enter_outage(self, error: StoreUnavailable) -> None:
        log.error(
            "breaker %s: store unreachable (%s); %s for %.0fs",
            self.key,
            error,
            self.policy.storage_outage,
            self.policy.storage_retry_seconds,
        )
        self._outage_until = self._local() + self.policy.storage_retry_seconds
        self._view = None  # whatever we knew may be stale by the time the store is back
        self._leases.forget()
        if not self._store_lost:
            self._store_lost = True
            self._listener.storage_lost(self.key, error)

    def _require_fallback(self) -> Breaker:
        if self._fallback is None:
            self._fallback = Breaker(self.key, MemoryBreakerStore(), self.policy, self._context)
        return self._fallback

    async def _call_without_store(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self.policy.storage_outage == "fail_closed":
            retry_after = max(self._outage_until - self._local(), 0.0)
            self._listener.call_rejected(self.key, retry_after)
            raise CircuitOpenError(self.key, retry_after=retry_after)
        return await self._require_fallback().call(fn)


class BreakerRegistry:
    """One ``Breaker`` per dependency key for this instance (process), all sharing one store.

    ``listeners`` hear every breaker's events (see ``BreakerListener``); the app attaches its metrics here.
    """

    def __init__(
        self,
        store: BreakerStore,
        policy: BreakerPolicy | None = None,
        *,
        classify: Classifier = default_classifier,
        instance_id: str | None = None,
        local_clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        listeners: Iterable[BreakerListener] = (),
    ) -> None:
        self.store = store
        self.policy = policy or BreakerPolicy()
        self.instance_id = instance_id or uuid.uuid4().hex[:16]
        self._context = BreakerContext(self.instance_id, classify, local_clock, sleep, BreakerListeners(listeners))
        self._breakers: dict[str, Breaker] = {}

    def get(self, key: str) -> Breaker:
        """The breaker for ``key`` (any text: it is made table-safe), created on first use."""
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = Breaker(key, self.store, self.policy, self._context)
        return breaker

    async def isolate(self, key: str) -> None:
        await self.get(key).isolate()

    async def reset(self, key: str) -> None:
        await self.get(key).reset()

    async def snapshot(self) -> list[BreakerSnapshot]:
        """Snapshots of the breakers this instance has used, by key."""
        return [await self._breakers[key].snapshot() for key in sorted(self._breakers)]

    async def flush(self) -> None:
        """Write every breaker's pending counts (call at shutdown so the last second is not lost)."""
        for breaker in self._breakers.values():
            await breaker.flush()
