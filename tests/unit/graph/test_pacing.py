"""The mirror's request budget: a token bucket that honours Retry-After and backs off near Graph's limit."""

from __future__ import annotations

import pytest

from shared.graph.pacing import RateLimit, RequestBudget


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _budget(time: FakeTime, requests: int = 10, seconds: float = 10.0) -> RequestBudget:
    return RequestBudget(RateLimit(requests, seconds), clock=time.clock, sleep=time.sleep)


async def test_a_burst_up_to_the_limit_passes_then_requests_are_spaced() -> None:
    time = FakeTime()
    budget = _budget(time)
    for _ in range(10):
        await budget.acquire()
    assert time.slept == []
    await budget.acquire()
    await budget.acquire()
    assert time.now == pytest.approx(2.0)  # one request per second after the burst


async def test_retry_after_stops_the_next_requests_until_it_passed() -> None:
    time = FakeTime()
    budget = _budget(time)
    budget.observe(429, {"retry-after": "7"})
    await budget.acquire()
    assert time.now == pytest.approx(7.0)


@pytest.mark.parametrize(("header", "slowdown"), [("0.8", 2.0), ("0.9", 4.0), ("1.0", 8.0), ("0.5", 1.0), ("x", 1.0)])
async def test_the_throttle_percentage_slows_the_rate(header: str, slowdown: float) -> None:
    time = FakeTime()
    budget = _budget(time, requests=1, seconds=1.0)
    budget.observe(200, {"x-ms-throttle-limit-percentage": header})
    assert budget.slowdown == pytest.approx(slowdown)
    await budget.acquire()
    await budget.acquire()
    assert time.now == pytest.approx(slowdown)


async def test_the_rate_recovers_when_graph_stops_warning() -> None:
    time = FakeTime()
    budget = _budget(time)
    budget.observe(200, {"x-ms-throttle-limit-percentage": "1.2"})
    budget.observe(200, {})
    assert budget.slowdown == 1.0
