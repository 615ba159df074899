"""What a breaker tells its listeners: the events the app's metrics (and anything else) subscribe to."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.errors import CircuitOpenError
from shared.resilience import BreakerListener, BreakerPolicy, BreakerRegistry, MemoryBreakerStore, State
from shared.resilience.breaker_store import BreakerStore
from tests.unit.resilience.test_breaker import KEY, POLICY, Beats, BrokenStore, Calls, FakeClock, fail

Event = tuple[object, ...]


class Recorder(BreakerListener):
    """Every event as a tuple, in order (``state_observed`` kept apart: it fires on every refresh)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.observed: list[State] = []

    def state_observed(self, key: str, state: State) -> None:
        self.observed.append(state)

    def state_changed(self, key: str, old: State, new: State) -> None:
        self.events.append(("changed", key, old, new))

    def call_rejected(self, key: str, retry_after: float | None) -> None:
        self.events.append(("rejected", key, retry_after))

    def storage_lost(self, key: str, error: Exception) -> None:
        self.events.append(("lost", key))

    def storage_restored(self, key: str) -> None:
        self.events.append(("restored", key))


def registry(
    store: BreakerStore, clock: FakeClock, *listeners: BreakerListener, policy: BreakerPolicy = POLICY
) -> BreakerRegistry:
    return BreakerRegistry(store, policy, local_clock=clock, sleep=Beats(), listeners=listeners)


async def test_trip_rejection_and_probe_are_reported_in_order() -> None:
    """Five failures trip (closed -> open), the next call is rejected with its retry_after, and a successful
    probe after the open period closes it (open -> closed); every listener hears all of it."""
    clock = FakeClock()
    first, second = Recorder(), Recorder()
    breaker = registry(MemoryBreakerStore(clock), clock, first, second).get(KEY)
    calls = Calls()
    await fail(breaker, calls, 5)
    with pytest.raises(CircuitOpenError):
        await breaker.call(calls.ok)
    clock.advance(10.0)
    assert await breaker.call(calls.ok) == "ok"
    expected = [
        ("changed", KEY, State.CLOSED, State.OPEN),
        ("rejected", KEY, pytest.approx(10.0)),
        ("changed", KEY, State.OPEN, State.CLOSED),
    ]
    assert first.events == expected
    assert second.events == expected
    assert first.observed[-1] == State.CLOSED
    assert State.OPEN in first.observed


async def test_store_outage_is_reported_once_when_lost_and_once_when_restored() -> None:
    """Under fail_open the outage is one ``lost`` event however many calls it spans, and one ``restored``
    when the store answers again."""
    clock = FakeClock()
    store = BrokenStore(clock)
    recorder = Recorder()
    breaker = registry(store, clock, recorder, policy=replace(POLICY, storage_retry_seconds=5.0)).get(KEY)
    calls = Calls()
    for _ in range(3):
        assert await breaker.call(calls.ok) == "ok"
    clock.advance(5.0)
    assert await breaker.call(calls.ok) == "ok"  # the retry fails too: still the same outage
    store.up = True
    clock.advance(5.0)
    assert await breaker.call(calls.ok) == "ok"
    assert recorder.events == [("lost", KEY), ("restored", KEY)]


async def test_fail_closed_reports_the_refusal() -> None:
    """A call refused because the store is down (fail_closed) is a rejection like an open breaker's."""
    clock = FakeClock()
    recorder = Recorder()
    breaker = registry(BrokenStore(clock), clock, recorder, policy=replace(POLICY, storage_outage="fail_closed")).get(
        KEY
    )
    with pytest.raises(CircuitOpenError):
        await breaker.call(Calls().ok)
    assert recorder.events == [("lost", KEY), ("rejected", KEY, pytest.approx(5.0))]


async def test_a_breaker_without_listeners_runs_as_before() -> None:
    """Listeners are optional: the default one ignores every event."""
    clock = FakeClock()
    breaker = registry(MemoryBreakerStore(clock), clock).get(KEY)
    await fail(breaker, Calls(), 5)
    assert (await breaker.snapshot()).state == State.OPEN
