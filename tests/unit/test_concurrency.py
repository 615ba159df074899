"""gather_bounded: never more than ``limit`` calls in flight, results in item order, errors propagate."""

from __future__ import annotations

import asyncio

import pytest

from shared.concurrency import gather_bounded


class Gate:
    """Holds every call until released, and remembers how many were in flight at most."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.started: list[int] = []

    async def __call__(self, item: int) -> int:
        self.started.append(item)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return item * 10


async def test_at_most_limit_calls_run_and_results_keep_item_order() -> None:
    gate = Gate()
    run = asyncio.create_task(gather_bounded(range(5), 2, gate))
    for _ in range(20):  # every runnable task gets its turn; a third call would have started by now
        await asyncio.sleep(0)
    assert gate.started == [0, 1]
    gate.release.set()
    assert await run == [0, 10, 20, 30, 40]
    assert gate.most == 2
    assert sorted(gate.started) == [0, 1, 2, 3, 4]


async def test_an_error_propagates() -> None:
    async def fail_on_three(item: int) -> int:
        if item == 3:
            raise RuntimeError("three")
        return item

    with pytest.raises(RuntimeError, match="three"):
        await gather_bounded(range(5), 2, fail_on_three)


async def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await gather_bounded([1], 0, lambda item: asyncio.sleep(0, item))
