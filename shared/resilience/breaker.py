"""A circuit breaker whose state is shared by every instance of the app through a ``BreakerStore``.

States: ``closed`` (calls pass, outcomes are counted), ``open`` (calls are refused with
``CircuitOpenError`` and a ``retry_after``), ``half_open`` (the open period is over: one probe call across
all instances decides), and ``isolated`` (forced open by an operator until ``reset``).

Rows per breaker (partition = ``safe_key(key)``):

- ``state``: state, generation, since, open_until, trips. Every change is a conditional write on the
  ETag that was read; a conflict re-reads the row and runs the decision again, so two instances racing
  to trip, or an operator isolating during a probe, cannot lose an update. ``half_open`` is not stored:
  it is ``open`` whose ``open_until`` has passed. Each change bumps ``generation``, which scopes counts and
  leases to the period they belong to (counts restart after every close).
- ``lease``: the half-open probe slot, taken by insert (conflict if held) or, once expired or left from an
  older generation, by a conditional replace. See "Exactly one probe" below.
- ``<key>~shards`` partition, one row per instance: that instance's outcome counts per time bucket over
  the window, the time of its last success and its trailing failures. Each instance writes only its own
  row (replace with its running totals, so a repeated write cannot double-count) at most about once per
  ``flush_interval_seconds``; trip evaluation reads the partition and sums the window.

Each instance keeps the state row for ``state_cache_seconds``: in steady state a call costs no Table
round trip; the instance makes about one state read and one shard write per second per breaker.

All times in rows come from ``store.now()`` (Table service time, see ``breaker_store``).

Exactly one probe: the lease is short (``probe_lease_seconds``) and its holder renews it every third of
that while the probe runs (an ETag-conditional replace), so a slow live probe keeps it however long it
takes (up to ``probe_timeout_seconds``, after which the breaker cancels it as a failure), while a holder
that died stops renewing and blocks the others for at most one lease period. Each lease carries a random
token: a renewal that conflicts re-reads the row and, if the token is still ours (our earlier write landed
but its answer was lost), carries on; any other token means the lease lapsed and was taken over. The
holder renews once more just before it writes the decision; a probe that lost its lease (renewals failed
for a whole lease period: store unreachable from it, process paused) drops its outcome and the new holder
decides. Should two probes still race to decide (a holder paused between that last renewal and the state
write), the state row settles it: both writes are conditional on the state row's ETag and on the probed
generation, so the first decision stands and the second sees a newer generation and leaves it. A probe
that never reports back (crash, cancellation) simply lets its lease expire.

When the store is unreachable the breaker never lets a Storage error escape ``call``. ``fail_open`` (the
default) keeps serving through an in-process breaker with the same policy (the dependency stays
protected per instance); ``fail_closed`` refuses calls with ``CircuitOpenError``. Either way the store is
tried again after ``storage_retry_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from typing import TypeVar

from shared import metrics
from shared.errors import (
    CircuitOpenError,
    PermanentError,
    ThrottledError,
    UnavailableError,
)
from shared.resilience.breaker_store import (
    BreakerStore,
    MemoryBreakerStore,
    Row,
    StoreConflict,
    StoreUnavailable,
    Values,
)
from shared.resilience.limits import ConcurrencyLimitedError
from shared.settings import StorageOutagePolicy
from shared.storage import safe_key

T = TypeVar("T")
log = logging.getLogger(__name__)

STATE_ROW = "state"
LEASE_ROW = "lease"
_WRITE_ATTEMPTS = 5


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"


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


@dataclass(frozen=True)
class BreakerSnapshot:
    """What a status page shows for one breaker. ``storage`` is ``unavailable`` while on the fallback."""

    key: str
    state: State
    since: float
    retry_after: float | None
    calls: int
    failures: int
    trips: int
    total_trips: int
    storage: str = "ok"


@dataclass(frozen=True)
class _View:
    """The state row as read (``etag`` None: the row does not exist yet, i.e. closed since forever)."""

    state: State
    generation: int = 0
    since: float = 0.0
    open_until: float = 0.0
    trips: int = 0
    total_trips: int = 0
    etag: str | None = None

    @classmethod
    def from_row(cls, row: Row | None) -> _View:
        if row is None:
            return cls(State.CLOSED)
        v = row.values
        try:
            return cls(
                State(str(v["State"])),
                int(v["Generation"]),
                float(v["Since"]),
                float(v["OpenUntil"]),
                int(v["Trips"]),
                int(v["TotalTrips"]),
                row.etag,
            )
        except (KeyError, ValueError, TypeError):  # hand-edited or foreign row: the next decision replaces it
            log.error("breaker state row is malformed, read as closed: %r", dict(v))
            return cls(State.CLOSED, etag=row.etag)

    def to_values(self) -> Values:
        return {
            "State": self.state.value,
            "Generation": self.generation,
            "Since": self.since,
            "OpenUntil": self.open_until,
            "Trips": self.trips,
            "TotalTrips": self.total_trips,
        }

    def shown(self, now: float) -> State:
        return State.HALF_OPEN if self.state is State.OPEN and now >= self.open_until else self.state


@dataclass
class _Counts:
    """This instance's outcomes in one generation, flushed to its shard row."""

    generation: int
    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket -> [successes, failures]
    last_success_at: float = 0.0
    streak: list[float] = field(default_factory=list)  # times of failures since the last local success
    dirty: bool = False
    unevaluated: bool = False


@dataclass
class _Lease:
    """The probe lease one call holds, as of its latest write."""

    generation: int
    token: str  # tells our own writes from a takeover's when a renewal conflicts
    etag: str
    lost: bool = False


@dataclass(frozen=True)
class _Ticket:
    view: _View
    probe: _Lease | None = None  # set when this call holds the probe lease


@dataclass(frozen=True)
class _Totals:
    calls: int
    failures: int
    streak: int


class Breaker:
    """One dependency's breaker as seen by this instance. Get it from ``BreakerRegistry.get``."""

    def __init__(
        self,
        key: str,
        store: BreakerStore,
        policy: BreakerPolicy,
        *,
        instance_id: str,
        classify: Classifier = default_classifier,
        local_clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.key = key
        self.policy = policy
        self._store = store
        self._instance = instance_id
        self._classify = classify
        self._local = local_clock
        self._sleep = sleep  # paces the probe lease's renewals
        self._pk = safe_key(key)
        self._shards_pk = f"{self._pk}~shards"
        self._view: _View | None = None
        self._view_at = -math.inf
        self._refresh = asyncio.Lock()
        self._counts = _Counts(generation=0)
        self._flush_lock = asyncio.Lock()
        self._last_flush = local_clock()
        self._last_eager_flush = -math.inf
        self._probe_busy: tuple[int, float] = (-1, 0.0)  # (generation, until) of a probe we know runs
        self._outage_until = -math.inf
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
        if ticket.probe is not None:
            return await self._probe(ticket, ticket.probe, fn)
        try:
            result = await fn()
        except Exception as error:  # BaseException (cancellation) is not counted; a probe's lease expires
            await self._settle(ticket, self._classify(error))
            raise
        await self._settle(ticket, self._classify(None))
        return result

    async def _admit(self) -> _Ticket:
        view = await self._state()
        now = self._store.now()
        if view.state is State.ISOLATED:
            raise CircuitOpenError(self.key)
        if view.state is State.OPEN:
            if now < view.open_until:
                raise CircuitOpenError(self.key, retry_after=view.open_until - now)
            return await self._take_probe(view, now)
        return _Ticket(view)

    async def _take_probe(self, view: _View, now: float) -> _Ticket:
        generation, until = self._probe_busy
        if generation == view.generation and now < until:
            raise CircuitOpenError(self.key, retry_after=until - now)
        # Claim locally first so this instance's concurrent callers do not all race for the lease row.
        self._probe_busy = (view.generation, now + self.policy.probe_lease_seconds)
        lease, until = await self._acquire_lease(view.generation, now)
        if lease is None:
            self._probe_busy = (view.generation, until)
            raise CircuitOpenError(self.key, retry_after=max(until - now, 0.0))
        log.info("breaker %s: half-open, this instance probes", self.key)
        return _Ticket(view, probe=lease)

    def _lease_values(self, generation: int, token: str, expires: float) -> Values:
        return {"Holder": self._instance, "Generation": generation, "ExpiresAt": expires, "Probe": token}

    async def _acquire_lease(self, generation: int, now: float) -> tuple[_Lease | None, float]:
        """The lease and its expiry if we took it, else (None, expiry of the holder's lease)."""
        expires = now + self.policy.probe_lease_seconds
        token = uuid.uuid4().hex
        values = self._lease_values(generation, token, expires)
        for _ in range(_WRITE_ATTEMPTS):
            try:
                etag = await self._store.insert(self._pk, LEASE_ROW, values)
                return _Lease(generation, token, etag), expires
            except StoreConflict:
                current = await self._store.read(self._pk, LEASE_ROW)
            if current is None:
                continue  # released in between: try the insert again
            try:
                held_for, held_until = int(current.values["Generation"]), float(current.values["ExpiresAt"])
            except (KeyError, ValueError, TypeError):
                held_for, held_until = -1, 0.0  # malformed: as good as expired
            if held_for == generation and now < held_until:
                return None, held_until
            try:  # expired, or left over from an earlier open period: take it over
                etag = await self._store.replace(self._pk, LEASE_ROW, values, current.etag)
                return _Lease(generation, token, etag), expires
            except StoreConflict:
                continue  # someone else took it over first; the next read says who
        return None, expires

    async def _probe(self, ticket: _Ticket, lease: _Lease, fn: Callable[[], Awaitable[T]]) -> T:
        """Run the half-open probe under ``probe_timeout_seconds`` while renewing its lease, then decide."""
        heartbeat = asyncio.create_task(self._keep_lease(lease))
        try:
            try:
                async with asyncio.timeout(self.policy.probe_timeout_seconds):
                    result = await fn()
            finally:
                heartbeat.cancel()
                await asyncio.wait([heartbeat])  # no renewal may land after the decision's own renewal
        except Exception as error:  # as in ``call``: a cancelled probe decides nothing, its lease expires
            await self._settle(ticket, self._classify(error))
            raise
        await self._settle(ticket, self._classify(None))
        return result

    async def _keep_lease(self, lease: _Lease) -> None:
        """Renew the lease every third of its length until cancelled or until it turns out to be lost."""
        while True:
            await self._sleep(self.policy.probe_lease_seconds / 3)
            try:
                if not await self._renew_lease(lease):
                    return
            except StoreUnavailable as error:  # it may still be ours: try again at the next beat
                log.warning("breaker %s: could not renew the probe lease: %s", self.key, error)

    async def _renew_lease(self, lease: _Lease) -> bool:
        """Extend the lease by a full period if it is still ours; False (and ``lease.lost``) if it was
        taken over. Raises ``StoreUnavailable``."""
        for _ in range(_WRITE_ATTEMPTS):
            if lease.lost:
                return False
            expires = self._store.now() + self.policy.probe_lease_seconds
            values = self._lease_values(lease.generation, lease.token, expires)
            try:
                lease.etag = await self._store.replace(self._pk, LEASE_ROW, values, lease.etag)
            except StoreConflict:
                current = await self._store.read(self._pk, LEASE_ROW)
                if current is None or current.values.get("Probe") != lease.token:
                    lease.lost = True
                    self._probe_busy = (-1, 0.0)
                    log.warning("breaker %s: the probe lost its lease (not renewed in time)", self.key)
                    return False
                lease.etag = current.etag  # an earlier write of ours landed though its answer was lost
                continue
            self._probe_busy = (lease.generation, expires)
            return True
        lease.lost = True  # never confirmed: act as if it were gone
        return False

    async def _settle(self, ticket: _Ticket, outcome: Outcome) -> None:
        """Record the outcome; store failures are logged and switch to the fallback, never raised."""
        try:
            if ticket.probe is not None:
                await self._finish_probe(ticket.view, ticket.probe, outcome)
            else:
                await self._record(ticket.view.generation, outcome)
        except StoreUnavailable as error:
            self._enter_outage(error)

    async def _finish_probe(self, probed: _View, lease: _Lease, outcome: Outcome) -> None:
        if outcome is Outcome.IGNORE:  # the probe proved nothing: let the next caller probe at once
            self._probe_busy = (-1, 0.0)
            if not lease.lost:
                await self._store.delete(self._pk, LEASE_ROW, lease.etag)
            return
        if not await self._renew_lease(lease):  # the lease lapsed and was taken over: its holder decides
            log.warning("breaker %s: probe outcome dropped, another instance holds the probe now", self.key)
            return
        closing = outcome is Outcome.SUCCESS

        def decide(current: _View) -> _View | None:
            if current.generation != probed.generation:
                return None  # an operator or another prober decided meanwhile; theirs stands
            return self._closed(current) if closing else self._opened(current)

        view = await self._write_state(decide, probed)
        log.warning("breaker %s: probe %s, now %s", self.key, "succeeded" if closing else "failed", view.state)

    # --- counting and tripping --------------------------------------------------------------------

    async def _record(self, generation: int, outcome: Outcome) -> None:
        counts = self._counts
        if outcome is Outcome.IGNORE or generation != counts.generation:
            return  # outcomes admitted under an older state row belong to a period already decided
        now = self._store.now()
        bucket = counts.buckets.setdefault(int(now // self.policy.bucket_seconds), [0, 0])
        if outcome is Outcome.SUCCESS:
            bucket[0] += 1
            counts.last_success_at = now
            counts.streak.clear()
        else:
            bucket[1] += 1
            counts.streak = [*counts.streak[-(self.policy.consecutive_failures - 1) :], now]
            counts.unevaluated = True
        counts.dirty = True
        local = self._local()
        if local - self._last_flush >= self.policy.flush_interval_seconds:
            await self._flush(wait=False)
        elif (
            outcome is Outcome.FAILURE
            and local - self._last_eager_flush >= self.policy.flush_interval_seconds / 10
            and self._trips(self._totals([self._shard_values(counts)], counts.generation, now))
        ):
            # This instance alone has seen enough to trip: write and evaluate now rather than at the next
            # interval (at most ten times per interval, should the other instances' successes outweigh it).
            self._last_eager_flush = local
            await self._flush(wait=True)

    async def flush(self) -> None:
        """Write this instance's pending counts now (and evaluate them); e.g. before shutdown."""
        if self._local() >= self._outage_until:
            try:
                await self._flush(wait=True)
            except StoreUnavailable as error:
                self._enter_outage(error)

    async def _flush(self, *, wait: bool) -> None:
        if self._flush_lock.locked() and not wait:
            return  # a flush is under way; what we just counted goes with the next one
        async with self._flush_lock:
            counts = self._counts
            if not counts.dirty:
                return
            now = self._store.now()
            horizon = int((now - self.policy.window_seconds) // self.policy.bucket_seconds)
            for bucket in [b for b in counts.buckets if b <= horizon]:
                del counts.buckets[bucket]
            counts.dirty = False
            self._last_flush = self._local()
            try:
                await self._store.upsert(self._shards_pk, self._instance, self._shard_values(counts))
            except StoreUnavailable:
                counts.dirty = True
                raise
            if counts.unevaluated:
                counts.unevaluated = False
                await self._evaluate(counts.generation)

    def _shard_values(self, counts: _Counts) -> Values:
        return {
            "Generation": counts.generation,
            "Buckets": json.dumps(sorted([b, s, f] for b, (s, f) in counts.buckets.items())),
            "LastSuccessAt": counts.last_success_at,
            "Streak": json.dumps(counts.streak),
            "UpdatedAt": self._store.now(),
        }

    async def _evaluate(self, generation: int) -> None:
        """Sum every instance's counts for this generation and trip if a rule says so."""
        now = self._store.now()
        rows = await self._store.scan(self._shards_pk)
        await self._sweep(rows, now)
        if not self._trips(self._totals([row.values for row in rows], generation, now)):
            return

        def decide(current: _View) -> _View | None:
            if current.generation != generation or current.state is not State.CLOSED:
                return None  # another instance tripped it (or an operator acted) first
            return self._opened(current)

        view = self._view or _View(State.CLOSED)
        view = await self._write_state(decide, view)
        if view.generation == generation + 1 and view.state is State.OPEN:
            log.warning("breaker %s: tripped, open for %.1fs", self.key, view.open_until - view.since)

    def _totals(self, shards: Iterable[Values], generation: int, now: float) -> _Totals:
        """Window counts over shard rows of ``generation``; the streak counts failures after the latest
        success of any instance (and within the window)."""
        horizon = now - self.policy.window_seconds
        first_bucket = int(horizon // self.policy.bucket_seconds) + 1
        calls = failures = 0
        last_success = horizon
        failure_times: list[float] = []
        for shard in shards:
            try:
                if int(shard["Generation"]) != generation:
                    continue
                buckets = [(int(b), int(ok), int(failed)) for b, ok, failed in json.loads(str(shard["Buckets"]))]
                streak = [float(t) for t in json.loads(str(shard["Streak"]))]
                succeeded_at = float(shard["LastSuccessAt"])
            except (KeyError, ValueError, TypeError):
                continue  # a malformed row counts for nothing rather than breaking every evaluation
            for bucket, ok, failed in buckets:
                if bucket >= first_bucket:
                    calls += ok + failed
                    failures += failed
            last_success = max(last_success, succeeded_at)
            failure_times.extend(streak)
        return _Totals(calls, failures, sum(1 for t in failure_times if t > last_success))

    def _trips(self, totals: _Totals) -> bool:
        p = self.policy
        by_ratio = totals.calls >= p.min_calls and totals.failures >= p.failure_ratio * totals.calls
        return by_ratio or totals.streak >= p.consecutive_failures

    async def _sweep(self, rows: list[Row], now: float) -> None:
        """Delete shard rows of instances gone for ten windows (Table Storage has no TTL)."""
        for row in rows:
            if float(row.values["UpdatedAt"]) < now - 10 * self.policy.window_seconds:
                await self._store.delete(self._shards_pk, row.key, row.etag)

    # --- state row --------------------------------------------------------------------------------

    async def _state(self) -> _View:
        """The cached state row, re-read when older than ``state_cache_seconds`` (one read at a time)."""
        if self._view is not None and self._local() - self._view_at < self.policy.state_cache_seconds:
            return self._view
        async with self._refresh:
            if self._view is not None and self._local() - self._view_at < self.policy.state_cache_seconds:
                return self._view
            return await self._read_state()

    async def _read_state(self) -> _View:
        self._remember(_View.from_row(await self._store.read(self._pk, STATE_ROW)))
        assert self._view is not None
        return self._view

    def _remember(self, view: _View) -> None:
        if view.generation != self._counts.generation:
            self._counts = _Counts(generation=view.generation)
        self._view, self._view_at = view, self._local()
        metrics.note_breaker_state(self.key, view.state.value)

    async def _write_state(self, decide: Callable[[_View], _View | None], current: _View) -> _View:
        """Apply ``decide`` to the row with an ETag-conditional write; on a conflict re-read and decide
        again. Returns the row as it stands afterwards (ours, or the one that beat us)."""
        for _ in range(_WRITE_ATTEMPTS):
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
            self._remember(replace(wanted, etag=etag))
            metrics.record_breaker_transition(self.key, wanted.state.value)
            return replace(wanted, etag=etag)
        log.warning("breaker %s: gave up writing state after %d conflicts", self.key, _WRITE_ATTEMPTS)
        return current

    def _opened(self, current: _View) -> _View:
        now = self._store.now()
        trips = current.trips + 1
        return _View(
            State.OPEN,
            current.generation + 1,
            now,
            now + self.policy.open_seconds(trips),
            trips,
            current.total_trips + 1,
        )

    def _closed(self, current: _View) -> _View:
        return _View(State.CLOSED, current.generation + 1, self._store.now(), 0.0, 0, current.total_trips)

    # --- operator actions and status --------------------------------------------------------------

    async def isolate(self) -> None:
        """Force the breaker open for every instance until ``reset``."""
        now = self._store.now()
        await self._operate(lambda row: replace(row, state=State.ISOLATED, generation=row.generation + 1, since=now))

    async def reset(self) -> None:
        """Close the breaker for every instance, restart its counts and its open-duration escalation."""
        await self._operate(self._closed)

    async def _operate(self, change: Callable[[_View], _View]) -> None:
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
        totals = self._totals([row.values for row in rows], view.generation, now)
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
        self._probe_busy = (-1, 0.0)

    def _require_fallback(self) -> Breaker:
        if self._fallback is None:
            self._fallback = Breaker(
                self.key,
                MemoryBreakerStore(),
                self.policy,
                instance_id=self._instance,
                classify=self._classify,
                local_clock=self._local,
                sleep=self._sleep,
            )
        return self._fallback

    async def _call_without_store(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self.policy.storage_outage == "fail_closed":
            raise CircuitOpenError(self.key, retry_after=max(self._outage_until - self._local(), 0.0))
        return await self._require_fallback().call(fn)


class BreakerRegistry:
    """One ``Breaker`` per dependency key for this instance (process), all sharing one store."""

    def __init__(
        self,
        store: BreakerStore,
        policy: BreakerPolicy | None = None,
        *,
        classify: Classifier = default_classifier,
        instance_id: str | None = None,
        local_clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.policy = policy or BreakerPolicy()
        self.instance_id = instance_id or uuid.uuid4().hex[:16]
        self._classify = classify
        self._local = local_clock
        self._sleep = sleep
        self._breakers: dict[str, Breaker] = {}

    def get(self, key: str) -> Breaker:
        """The breaker for ``key`` (any text: it is made table-safe), created on first use."""
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = Breaker(
                key,
                self.store,
                self.policy,
                instance_id=self.instance_id,
                classify=self._classify,
                local_clock=self._local,
                sleep=self._sleep,
            )
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
