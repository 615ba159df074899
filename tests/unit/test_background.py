"""The background gate (slots steered by loop lag and ack time) and the loop-lag monitor."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.background import BackgroundGate, GateConfig
from shared.loop_lag import LoopLagMonitor


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gate(**config: float) -> tuple[BackgroundGate, FakeClock]:
    clock = FakeClock()
    return BackgroundGate(GateConfig(**config), clock=clock), clock  # type: ignore[arg-type]


def test_a_fresh_gate_starts_narrow_and_opens_one_slot_per_good_lag_sample() -> None:
    g, _ = gate(max_slots=4)
    assert g.limit == 1
    for expected in (2, 3, 4, 4):
        g.on_lag(0.001)
        assert g.limit == expected


def test_a_slow_signal_halves_the_slots_once_per_cooldown() -> None:
    g, clock = gate(max_slots=64, target_lag=0.02, target_ack=0.1, cooldown=0.1)
    g.limit = 64
    g.on_ack(0.5)
    assert g.limit == 32
    g.on_ack(0.5)  # the same burst of slow POSTs: one signal
    g.on_lag(0.5)
    assert g.limit == 32
    clock.now += 0.1
    g.on_lag(0.5)
    assert g.limit == 16
    clock.now += 0.1
    g.on_ack(0.05)  # under target: no change (recovery comes from lag samples)
    assert g.limit == 16


def test_the_slots_close_down_to_min_slots_and_reopen() -> None:
    g, clock = gate(min_slots=0, max_slots=8)
    g.limit = 8
    for _ in range(5):
        clock.now += 1
        g.on_ack(10.0)
    assert g.limit == 0
    clock.now += 0.5
    g.on_lag(0.0)  # within ``hold`` of the last slow signal: stays closed
    assert g.limit == 0
    clock.now += 0.5
    g.on_lag(0.0)
    assert g.limit == 1


@pytest.mark.parametrize(("low", "high"), [(-1, 4), (3, 2), (0, 0)])
def test_bad_bounds_are_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="min_slots"):
        GateConfig(min_slots=low, max_slots=high)


async def test_work_beyond_the_limit_waits_first_come_first_served() -> None:
    g, _ = gate(max_slots=8)  # limit 1 (slow start)
    release = asyncio.Event()
    order: list[str] = []

    async def work(name: str) -> None:
        async with g.slot():
            order.append(name)
            await release.wait()

    tasks = [asyncio.create_task(work(name)) for name in "abc"]
    await asyncio.sleep(0)
    assert order == ["a"]
    assert (g.in_use, g.waiting) == (1, 2)
    g.on_lag(0.0)  # one more slot: the oldest waiter gets it
    await asyncio.sleep(0)
    assert order == ["a", "b"]
    assert g.in_use == 2
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]
    assert (g.in_use, g.waiting) == (0, 0)


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_gives_it_back() -> None:
    g, _ = gate(max_slots=8)

    async def waiter() -> None:
        async with g.slot():
            raise AssertionError("never runs: cancelled before it resumes")

    held = g.slot()
    await held.__aenter__()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    await held.__aexit__(None, None, None)  # frees the slot and hands it to ``second``...
    second.cancel()  # ...which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await second
    assert g.in_use == 0
    async with g.slot():  # the slot is usable again
        assert g.in_use == 1


async def test_a_cancelled_waiter_does_not_take_a_slot() -> None:
    g, _ = gate(max_slots=8)
    async with g.slot():
        waiting = asyncio.create_task(g.slot().__aenter__())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert (g.in_use, g.waiting) == (0, 0)


async def test_the_monitor_measures_a_blocked_loop() -> None:
    samples: list[float] = []
    monitor = LoopLagMonitor(interval=0.01, listeners=(samples.append,))
    monitor.ensure_running()
    monitor.ensure_running()  # idempotent on the same loop
    await asyncio.sleep(0.03)
    time.sleep(0.1)  # noqa: ASYNC251 - blocking the loop on purpose: the sleeper wakes ~0.1 s late
    await asyncio.sleep(0.03)
    await monitor.stop()
    assert max(samples) >= 0.08
    assert monitor.latest == samples[-1]
    assert sorted(samples)[len(samples) // 2] < 0.05  # unblocked samples stay small


def test_the_gate_is_contended_while_acknowledgements_are_being_made() -> None:
    g, clock = gate(hold=1.0)
    assert not g.contended
    g.on_ack(0.01)
    assert g.contended
    clock.now += 1.0
    assert not g.contended


async def test_yield_slot_keeps_going_when_nobody_waits_and_queues_behind_waiters_otherwise() -> None:
    g, _ = gate(max_slots=8)  # limit 1
    order: list[str] = []

    async def other() -> None:
        async with g.slot():
            order.append("other")

    async with g.slot():
        await g.yield_slot()  # nobody waits, under the limit: no pause
        assert g.in_use == 1
        waiting = asyncio.create_task(other())
        await asyncio.sleep(0)
        assert g.waiting == 1
        await g.yield_slot()  # gives the slot to ``other`` and comes back after it
        order.append("mine")
        assert g.in_use == 1
    await waiting
    assert order == ["other", "mine"]
    assert (g.in_use, g.waiting) == (0, 0)


def test_a_fresh_gate_never_closes_below_one_slot_by_default() -> None:
    g, clock = gate(max_slots=8)
    for _ in range(5):
        clock.now += 1
        g.on_ack(10.0)
    assert g.limit == 1


def test_falling_behind_relaxes_the_targets_to_their_ceilings() -> None:
    """While messages are admitted later than ``target_delay``, acks and lag up to ``behind_factor`` times
    their targets leave the slots alone, and good lag samples open slots despite recent slow signals."""
    g, clock = gate(max_slots=16, target_ack=0.1, target_lag=0.02, target_delay=1.0, behind_factor=2.5)
    g.limit = 8
    g.on_delay(0.5)  # within target: not behind
    g.on_ack(0.2)
    assert (g.behind, g.limit) == (False, 4)
    clock.now += 0.2
    g.on_delay(3.0)
    assert g.behind
    g.on_ack(0.2)  # over its target, under its ceiling (0.25 s)
    g.on_lag(0.04)  # likewise (ceiling 0.05 s): a good sample, opens a slot although 0.2 s ago was slow
    assert g.limit == 5
    g.on_ack(0.3)  # over the ceiling: acknowledgements still win
    assert g.limit == 2
    clock.now += 1.0  # no late message for ``hold``: the targets are back
    assert not g.behind
    clock.now += 0.1
    g.on_ack(0.2)
    assert g.limit == 1
