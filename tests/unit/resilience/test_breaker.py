"""The breaker's state machine on the in-memory store with a controllable clock: no sleeps, no I/O.

Two registries sharing one ``MemoryBreakerStore`` behave like two app instances sharing one table.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from shared.errors import CircuitOpenError, NotFoundError, ThrottledError, UnavailableError
from shared.resilience import BreakerPolicy, BreakerRegistry, MemoryBreakerStore, Outcome, State
from shared.resilience.breaker import Breaker
from shared.resilience.breaker_store import Row, StoreUnavailable, Values
from shared.resilience.limits import KeyedLimiter
from shared.storage import safe_key
from tests.unit.ordering import until

KEY = "graph/users"
POLICY = BreakerPolicy(
    failure_ratio=0.5,
    min_calls=10,
    window_seconds=30.0,
    consecutive_failures=5,
    open_base_seconds=10.0,
    open_max_seconds=40.0,
    probe_lease_seconds=5.0,
    state_cache_seconds=0.0,  # every call sees the shared row: the tests read like a timeline
    flush_interval_seconds=0.0,  # every outcome is written and evaluated at once
)


class FakeClock:
    """Both the shared (service) clock and the local monotonic clock of every instance in a test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="store")
def _store(clock: FakeClock) -> MemoryBreakerStore:
    return MemoryBreakerStore(clock)


class Beats:
    """The ``sleep`` of breakers whose probe-lease renewals the test paces: ``beat()`` wakes every renewal
    that is waiting and returns once each has renewed and waits again (or stopped)."""

    def __init__(self) -> None:
        self._waiting: list[asyncio.Future[None]] = []

    async def __call__(self, seconds: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        await waiter

    async def waiting(self, count: int) -> None:
        """Return once ``count`` renewals wait (the memory store never suspends: a few loop steps)."""
        for _ in range(100):
            if len([w for w in self._waiting if not w.done()]) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"expected {count} renewals waiting, found {len(self._waiting)}")

    async def beat(self) -> None:
        woken, self._waiting = [w for w in self._waiting if not w.done()], []
        for waiter in woken:
            waiter.set_result(None)
        await self.waiting(len(woken))


def make_registry(
    store: MemoryBreakerStore, clock: FakeClock, policy: BreakerPolicy = POLICY, beats: Beats | None = None
) -> BreakerRegistry:
    return BreakerRegistry(store, policy, local_clock=clock, sleep=beats or Beats())


@pytest.fixture(name="breaker")
def _breaker(store: MemoryBreakerStore, clock: FakeClock) -> Breaker:
    return make_registry(store, clock).get(KEY)


class Calls:
    """Callables for ``breaker.call`` that count how often the dependency was really called."""

    def __init__(self) -> None:
        self.count = 0

    async def ok(self) -> str:
        self.count += 1
        return "ok"

    async def throttled(self) -> str:
        self.count += 1
        raise ThrottledError("429", status=429)

    async def not_found(self) -> str:
        self.count += 1
        raise NotFoundError("404", status=404)


@pytest.fixture(name="calls")
def _calls() -> Calls:
    return Calls()


async def fail(breaker: Breaker, calls: Calls, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ThrottledError):
            await breaker.call(calls.throttled)


async def state(breaker: Breaker) -> State:
    return (await breaker.snapshot()).state


async def test_trips_on_failure_ratio_once_min_calls_reached(breaker: Breaker, calls: Calls) -> None:
    """Half the calls failing trips the breaker only once ``min_calls`` outcomes were counted."""
    for _ in range(4):
        await breaker.call(calls.ok)
        await fail(breaker, calls, 1)
    await breaker.call(calls.ok)
    assert await state(breaker) is State.CLOSED  # 9 calls, 4 failures: below min_calls
    await fail(breaker, calls, 1)
    snap = await breaker.snapshot()
    assert (snap.state, snap.trips, snap.total_trips) == (State.OPEN, 1, 1)


async def test_failure_ratio_below_threshold_stays_closed(breaker: Breaker, calls: Calls) -> None:
    """40 % failures over many calls never trips a breaker set to 50 %."""
    for _ in range(10):
        for _ in range(3):
            await breaker.call(calls.ok)
        await fail(breaker, calls, 2)
    snap = await breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures) == (State.CLOSED, 50, 20)


async def test_consecutive_failures_trip_at_low_traffic(breaker: Breaker, calls: Calls) -> None:
    """Five failures in a row trip the breaker long before ``min_calls``; a success in between resets the run."""
    await fail(breaker, calls, 4)
    await breaker.call(calls.ok)
    await fail(breaker, calls, 4)
    assert await state(breaker) is State.CLOSED
    await fail(breaker, calls, 1)
    assert await state(breaker) is State.OPEN


async def test_consecutive_failures_of_two_instances_add_up(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """Failures in a row spread over two instances count as one run (no success anywhere in between)."""
    a, b = make_registry(store, clock).get(KEY), make_registry(store, clock).get(KEY)
    calls = Calls()
    await fail(a, calls, 3)
    clock.advance(0.1)
    await fail(b, calls, 2)
    assert await state(a) is State.OPEN


async def test_success_on_another_instance_breaks_the_run(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """A success on instance B after A's failures resets the run for both."""
    a, b = make_registry(store, clock).get(KEY), make_registry(store, clock).get(KEY)
    calls = Calls()
    await fail(a, calls, 4)
    clock.advance(0.1)
    await b.call(calls.ok)
    clock.advance(0.1)
    await fail(a, calls, 1)
    await fail(b, calls, 3)
    assert await state(a) is State.CLOSED


async def test_failures_older_than_the_window_do_not_count(breaker: Breaker, clock: FakeClock, calls: Calls) -> None:
    """Failures that left the sliding window neither add to the ratio nor to the run."""
    await fail(breaker, calls, 4)
    clock.advance(31.0)
    await fail(breaker, calls, 1)
    snap = await breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures) == (State.CLOSED, 1, 1)


async def test_not_found_and_unknown_errors_do_not_count_as_failures(breaker: Breaker, calls: Calls) -> None:
    """404s prove the dependency answers (counted as successes); a bug in our code counts not at all."""

    async def bug() -> None:
        raise ValueError("our bug")

    for _ in range(20):
        with pytest.raises(NotFoundError):
            await breaker.call(calls.not_found)
        with pytest.raises(ValueError, match="our bug"):
            await breaker.call(bug)
    snap = await breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures) == (State.CLOSED, 20, 0)


async def test_unavailable_and_timeout_count_as_failures(breaker: Breaker) -> None:
    """503s and timeouts are the dependency's failures by default."""

    async def unavailable() -> None:
        raise UnavailableError("503", status=503)

    async def timeout() -> None:
        raise TimeoutError

    for _ in range(2):
        with pytest.raises(UnavailableError):
            await breaker.call(unavailable)
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await breaker.call(timeout)
    assert await state(breaker) is State.OPEN


async def test_open_breaker_refuses_with_retry_after_without_calling(
    breaker: Breaker, clock: FakeClock, calls: Calls
) -> None:
    """While open, calls fail fast with CircuitOpenError whose retry_after counts down to the end of the period."""
    await fail(breaker, calls, 5)
    made = calls.count
    with pytest.raises(CircuitOpenError) as first:
        await breaker.call(calls.ok)
    assert first.value.retry_after == pytest.approx(10.0)
    assert first.value.breaker == KEY
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as later:
        await breaker.call(calls.ok)
    assert later.value.retry_after == pytest.approx(6.0)
    assert calls.count == made
    assert (await breaker.snapshot()).retry_after == pytest.approx(6.0)


async def test_circuit_open_errors_are_never_counted(breaker: Breaker, clock: FakeClock, calls: Calls) -> None:
    """Refused calls (and a CircuitOpenError raised by a nested breaker) leave the counts alone."""

    async def nested_refusal() -> None:
        raise CircuitOpenError("inner")

    for _ in range(30):
        with pytest.raises(CircuitOpenError):
            await breaker.call(nested_refusal)
    assert (await breaker.snapshot()).calls == 0


async def test_half_open_after_period_and_successful_probe_closes(
    breaker: Breaker, clock: FakeClock, calls: Calls
) -> None:
    """After the open period the breaker is half-open; a successful probe closes it and restarts the counts."""
    await fail(breaker, calls, 5)
    clock.advance(10.0)
    assert await state(breaker) is State.HALF_OPEN
    assert await breaker.call(calls.ok) == "ok"
    snap = await breaker.snapshot()
    assert (snap.state, snap.trips, snap.calls, snap.failures, snap.total_trips) == (State.CLOSED, 0, 0, 0, 1)
    await fail(breaker, calls, 4)  # the old run is forgotten: four more do not trip
    assert await state(breaker) is State.CLOSED


async def test_failed_probe_reopens_for_longer_up_to_the_cap(breaker: Breaker, clock: FakeClock, calls: Calls) -> None:
    """Each failed probe doubles the open period (10, 20, 40 s) until ``open_max_seconds`` (40 s)."""
    await fail(breaker, calls, 5)
    for expected in (20.0, 40.0, 40.0):
        clock.advance(1000.0)
        await fail(breaker, calls, 1)  # the probe
        with pytest.raises(CircuitOpenError) as refused:
            await breaker.call(calls.ok)
        assert refused.value.retry_after == pytest.approx(expected)
    assert (await breaker.snapshot()).trips == 4


async def test_half_open_admits_one_probe_across_instances(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """While one instance's probe runs, every other caller on any instance is refused; its success closes both."""
    a, b = make_registry(store, clock).get(KEY), make_registry(store, clock).get(KEY)
    calls = Calls()
    await fail(a, calls, 5)
    clock.advance(10.0)
    probing, release = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> str:
        probing.set()
        await release.wait()
        return "probed"

    probe = asyncio.create_task(a.call(slow_probe))
    await until(probing.is_set, "the probe admitted and running")
    for breaker in (a, b, a, b):
        with pytest.raises(CircuitOpenError) as refused:
            await breaker.call(calls.ok)
        assert refused.value.retry_after == pytest.approx(5.0)  # until the probe's lease expires
    release.set()
    assert await probe == "probed"
    assert calls.count == 5
    assert await b.call(calls.ok) == "ok"
    assert await state(b) is State.CLOSED


async def test_crashed_probe_lets_another_instance_probe_after_lease_expiry(
    store: MemoryBreakerStore, clock: FakeClock
) -> None:
    """A probe that never reports back (cancelled) blocks others only until its lease expires."""
    a, b = make_registry(store, clock).get(KEY), make_registry(store, clock).get(KEY)
    calls = Calls()
    await fail(a, calls, 5)
    clock.advance(10.0)
    probing = asyncio.Event()

    async def hangs() -> None:
        probing.set()
        await asyncio.Event().wait()

    probe = asyncio.create_task(a.call(hangs))
    await until(probing.is_set, "the probe admitted and running")
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    with pytest.raises(CircuitOpenError):
        await b.call(calls.ok)
    clock.advance(5.0)
    assert await b.call(calls.ok) == "ok"
    assert await state(a) is State.CLOSED


async def test_a_slow_probe_renews_its_lease_and_stays_the_only_probe(
    store: MemoryBreakerStore, clock: FakeClock
) -> None:
    """A live probe running three lease periods keeps its lease (renewed every third of it): no other
    caller on any instance probes meanwhile."""
    beats = Beats()
    a, b = make_registry(store, clock, beats=beats).get(KEY), make_registry(store, clock).get(KEY)
    calls = Calls()
    await fail(a, calls, 5)
    clock.advance(10.0)
    release = asyncio.Event()

    async def slow_probe() -> str:
        await release.wait()
        return "probed"

    probe = asyncio.create_task(a.call(slow_probe))
    await beats.waiting(1)
    for _ in range(4):  # 16 s in all, the lease is 5 s
        clock.advance(4.0)
        await beats.beat()
        for breaker in (b, a):
            with pytest.raises(CircuitOpenError) as refused:
                await breaker.call(calls.ok)
            assert 0 < (refused.value.retry_after or 0) <= 5.0  # b may still go by the expiry it last read
    release.set()
    assert await probe == "probed"
    assert calls.count == 5  # only the failures that tripped it: no second probe ran
    assert await state(b) is State.CLOSED


async def test_a_probe_that_lost_its_lease_does_not_decide(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """A probe that could not renew for a whole lease period (here: paused) lost the lease to another
    instance; when it ends, its success is dropped and the new holder's failure decides."""
    a, b = make_registry(store, clock).get(KEY), make_registry(store, clock).get(KEY)
    calls = Calls()
    await fail(a, calls, 5)
    clock.advance(10.0)
    release_a, release_b = asyncio.Event(), asyncio.Event()
    a_probing, b_probing = asyncio.Event(), asyncio.Event()

    async def succeeds_late() -> str:
        a_probing.set()
        await release_a.wait()
        return "probed"

    async def fails_late() -> str:
        b_probing.set()
        await release_b.wait()
        raise UnavailableError("503", status=503)

    paused = asyncio.create_task(a.call(succeeds_late))
    await until(a_probing.is_set, "a's probe admitted and running")
    clock.advance(6.0)  # a's lease ran out unrenewed
    taker = asyncio.create_task(b.call(fails_late))
    await until(b_probing.is_set, "b's probe admitted once a's lease ran out")
    release_a.set()
    assert await paused == "probed"  # its caller still gets the answer
    assert await state(a) is State.HALF_OPEN
    release_b.set()
    with pytest.raises(UnavailableError):
        await taker
    snap = await a.snapshot()
    assert (snap.state, snap.trips) == (State.OPEN, 2)


async def test_a_probe_running_past_its_timeout_is_cancelled_as_a_failure(
    store: MemoryBreakerStore, clock: FakeClock
) -> None:
    """``probe_timeout_seconds`` bounds a probe, so a hung one cannot keep renewing the lease forever."""
    breaker = make_registry(store, clock, replace(POLICY, probe_timeout_seconds=0.01)).get(KEY)
    calls = Calls()
    await fail(breaker, calls, 5)
    clock.advance(10.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5.0):
            await breaker.call(asyncio.Event().wait)
    snap = await breaker.snapshot()
    assert (snap.state, snap.trips) == (State.OPEN, 2)


async def test_local_concurrency_limits_are_never_counted(breaker: Breaker) -> None:
    """A wait for a local slot that times out inside a breaker call is our refusal, not the dependency's
    failure: many of them leave the breaker closed and count nothing."""
    limiter = KeyedLimiter(1, acquire_timeout=0.001, name="graph-mailbox")
    held = asyncio.Event()

    async def hold() -> None:
        async with limiter.slot("m"):
            held.set()
            await asyncio.Event().wait()

    holder = asyncio.create_task(hold())
    await held.wait()

    async def limited() -> None:
        async with limiter.slot("m"):
            pass

    for _ in range(3 * POLICY.consecutive_failures):
        with pytest.raises(ThrottledError) as raised:
            await breaker.call(limited)
        assert raised.value.code == "concurrency_limited"
    holder.cancel()
    snap = await breaker.snapshot()
    assert (snap.state, snap.calls) == (State.CLOSED, 0)


async def test_probe_that_proves_nothing_frees_the_slot_at_once(breaker: Breaker, clock: FakeClock) -> None:
    """A probe ending in an uncounted error (a bug) releases its lease: the next caller probes immediately."""
    calls = Calls()
    await fail(breaker, calls, 5)
    clock.advance(10.0)

    async def bug() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await breaker.call(bug)
    assert await breaker.call(calls.ok) == "ok"
    assert await state(breaker) is State.CLOSED


async def test_isolate_forces_open_until_reset_on_every_instance(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """An isolated breaker refuses calls (retry_after unknown) on all instances, forever, until reset."""
    a_registry, b_registry = make_registry(store, clock), make_registry(store, clock)
    a, b = a_registry.get(KEY), b_registry.get(KEY)
    calls = Calls()
    await a_registry.isolate(KEY)
    clock.advance(1e6)
    with pytest.raises(CircuitOpenError) as refused:
        await b.call(calls.ok)
    assert refused.value.retry_after is None
    assert calls.count == 0
    assert await state(a) is State.ISOLATED
    await b_registry.reset(KEY)
    assert await a.call(calls.ok) == "ok"
    assert await state(b) is State.CLOSED


async def test_isolate_during_a_probe_wins_over_the_probe_result(breaker: Breaker, clock: FakeClock) -> None:
    """The probe's close is a conditional write on the state it probed; the operator's isolate changed it, so
    the probe re-reads, sees a newer decision and leaves it."""
    calls = Calls()
    await fail(breaker, calls, 5)
    clock.advance(10.0)
    probing, release = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> str:
        probing.set()
        await release.wait()
        return "ok"

    probe = asyncio.create_task(breaker.call(slow_probe))
    await until(probing.is_set, "the probe admitted and running")
    await breaker.isolate()
    release.set()
    await probe
    assert await state(breaker) is State.ISOLATED


async def test_racing_trips_resolve_through_a_conflict_into_one_trip(
    store: MemoryBreakerStore, clock: FakeClock
) -> None:
    """Two instances that both decide to trip from the same state: one write wins, the other conflicts,
    re-reads and accepts it, so the breaker trips once."""
    batched = replace(POLICY, flush_interval_seconds=60.0, consecutive_failures=100)
    a = make_registry(store, clock, batched).get(KEY)
    b = make_registry(store, clock, batched).get(KEY)
    calls = Calls()
    await fail(a, calls, 5)
    await fail(b, calls, 4)
    await asyncio.gather(a.flush(), b.flush())  # 9 failures in the window: below min_calls
    await fail(a, calls, 1)
    await fail(b, calls, 1)  # neither instance alone has 10, each sees 10 once it adds its own
    assert store.stats.conflicts == 0
    await asyncio.gather(a.flush(), b.flush())
    assert store.stats.conflicts == 1
    snap = await a.snapshot()
    assert (snap.state, snap.trips, snap.total_trips) == (State.OPEN, 1, 1)


async def test_state_row_is_cached_and_counts_are_batched(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """With a 1 s cache and 1 s flushes, 100 calls in one second cost one read; the next second one write."""
    policy = replace(POLICY, state_cache_seconds=1.0, flush_interval_seconds=1.0)
    breaker = make_registry(store, clock, policy).get(KEY)
    calls = Calls()
    for _ in range(100):
        await breaker.call(calls.ok)
    assert (store.stats.reads, store.stats.writes) == (1, 0)
    clock.advance(1.0)
    await breaker.call(calls.ok)
    assert (store.stats.reads, store.stats.writes) == (2, 1)
    assert (await breaker.snapshot()).calls == 101


async def test_an_instance_with_failing_counts_flushes_early(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """Counts that already meet a trip rule are written before the flush interval is over, so a failing
    dependency trips the breaker within a fraction of a second."""
    policy = replace(POLICY, state_cache_seconds=1.0, flush_interval_seconds=1.0)
    breaker = make_registry(store, clock, policy).get(KEY)
    calls = Calls()
    clock.advance(0.2)  # more than a tenth of the interval since the last flush
    await fail(breaker, calls, 5)
    assert store.stats.writes >= 2  # the shard row and the state row, before the interval is over
    clock.advance(1.0)  # the cached closed state expires
    with pytest.raises(CircuitOpenError):
        await breaker.call(calls.ok)


async def test_custom_classifier_decides_what_counts(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """A classifier that counts 404s as failures trips the breaker on them."""

    def strict(error: BaseException | None) -> Outcome:
        return Outcome.SUCCESS if error is None else Outcome.FAILURE

    breaker = BreakerRegistry(store, POLICY, classify=strict, local_clock=clock).get(KEY)
    calls = Calls()
    for _ in range(5):
        with pytest.raises(NotFoundError):
            await breaker.call(calls.not_found)
    assert await state(breaker) is State.OPEN


async def test_shard_rows_of_departed_instances_are_swept(store: MemoryBreakerStore, clock: FakeClock) -> None:
    """Table Storage has no TTL: a shard row not updated for ten windows is deleted during an evaluation."""
    gone, alive = make_registry(store, clock).get(KEY), make_registry(store, clock).get(KEY)
    calls = Calls()
    await fail(gone, calls, 1)
    clock.advance(301.0)
    await fail(alive, calls, 1)
    rows = await store.scan(f"{safe_key(KEY)}~shards")
    assert [row.key for row in rows] == [alive._instance]


class BrokenStore(MemoryBreakerStore):
    """A store that is down until ``up`` is set; counts the attempts made while down."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.up = False
        self.attempts = 0

    def _check(self) -> None:
        if not self.up:
            self.attempts += 1
            raise StoreUnavailable("connection refused")

    async def read(self, partition: str, key: str) -> Row | None:
        self._check()
        return await super().read(partition, key)

    async def upsert(self, partition: str, key: str, values: Values) -> None:
        self._check()
        await super().upsert(partition, key, values)


async def test_fail_open_keeps_calling_through_an_in_process_breaker(clock: FakeClock) -> None:
    """With the store down, calls still run, protected by a local breaker with the same policy; the store is
    retried only after ``storage_retry_seconds``."""
    store = BrokenStore(clock)
    breaker = make_registry(store, clock, replace(POLICY, storage_retry_seconds=5.0)).get(KEY)
    calls = Calls()
    assert await breaker.call(calls.ok) == "ok"
    await fail(breaker, calls, 5)
    with pytest.raises(CircuitOpenError):  # the fallback breaker tripped
        await breaker.call(calls.ok)
    snap = await breaker.snapshot()
    assert (snap.storage, snap.state) == ("unavailable", State.OPEN)
    assert store.attempts == 1
    store.up = True
    clock.advance(5.0)
    assert await breaker.call(calls.ok) == "ok"  # back on the shared (still closed) state
    assert (await breaker.snapshot()).storage == "ok"


async def test_fail_closed_refuses_calls_while_the_store_is_down(clock: FakeClock) -> None:
    """With ``fail_closed`` an unreachable store means CircuitOpenError, with retry_after until the next try."""
    store = BrokenStore(clock)
    breaker = make_registry(store, clock, replace(POLICY, storage_outage="fail_closed")).get(KEY)
    calls = Calls()
    with pytest.raises(CircuitOpenError) as refused:
        await breaker.call(calls.ok)
    assert refused.value.retry_after == pytest.approx(5.0)
    assert calls.count == 0


async def test_operator_actions_report_an_unreachable_store_as_unavailable(clock: FakeClock) -> None:
    """isolate/reset cannot silently fail: an unreachable store is an UnavailableError, not an azure error."""
    breaker = make_registry(BrokenStore(clock), clock).get(KEY)
    with pytest.raises(UnavailableError):
        await breaker.isolate()


def test_open_period_grows_exponentially_up_to_the_cap() -> None:
    """open_seconds(trips) = base * 2^(trips-1), capped, and sane for absurd trip counts."""
    policy = BreakerPolicy(open_base_seconds=10.0, open_max_seconds=300.0)
    assert [policy.open_seconds(n) for n in (1, 2, 3, 5, 6, 10_000)] == [10, 20, 40, 160, 300, 300]


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_ratio": 0.0},
        {"failure_ratio": 1.5},
        {"min_calls": 0},
        {"window_seconds": 0.0},
        {"open_base_seconds": float("nan")},
        {"state_cache_seconds": -1.0},
        {"storage_outage": "maybe"},
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, object]) -> None:
    """A policy that could never work (ratio 0, empty window, NaN) fails at construction."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field; any ValueError is right
        BreakerPolicy(**bad)  # type: ignore[arg-type]


async def test_malformed_rows_neither_break_calls_nor_block_tripping(
    store: MemoryBreakerStore, clock: FakeClock, breaker: Breaker
) -> None:
    """A hand-edited state row reads as closed and is replaced by the next decision; garbage shard and lease
    rows count for nothing."""
    await store.insert(safe_key(KEY), "state", {"State": "sideways"})
    await store.insert(safe_key(KEY), "lease", {"Holder": "?"})
    await store.insert(f"{safe_key(KEY)}~shards", "junk", {"Buckets": "{not json", "UpdatedAt": clock.now})
    calls = Calls()
    assert await breaker.call(calls.ok) == "ok"
    await fail(breaker, calls, 5)
    clock.advance(10.0)
    assert await breaker.call(calls.ok) == "ok"  # the probe took over the malformed lease
    assert await state(breaker) is State.CLOSED
