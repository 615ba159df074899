"""Timers that fire as the process starts wait out the startup delay, so a cold start's first request goes first."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from shared import invocation
from shared.wiring import registry


class Ctx:
    invocation_id = "inv-1"


@pytest.fixture(name="sleeps")
def _sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds ``shared.invocation`` asked to sleep (without sleeping; other modules' sleeps are real)."""
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(invocation, "asyncio", SimpleNamespace(sleep=sleep))
    return asked


@pytest.fixture(autouse=True)
async def _settings(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    for name, value in {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
        "GRAPH_AUTH_MODE": "static_token",
        "GRAPH_STATIC_TOKEN": "t",
        "TIMER_STARTUP_DELAY_SECONDS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    await registry.reset()
    yield
    await registry.reset()


def _process_age(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(invocation, "_INDEXED_AT", time.monotonic() - seconds)


async def test_a_young_process_waits_for_the_rest_of_the_delay(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    _process_age(monkeypatch, 1.0)
    await invocation.after_startup_delay(3.0)
    assert len(sleeps) == 1
    assert 1.0 < sleeps[0] <= 2.0


async def test_an_older_process_does_not_wait(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    _process_age(monkeypatch, 3.5)
    await invocation.after_startup_delay(3.0)
    assert sleeps == []


async def test_a_timer_at_start_runs_its_work_after_the_delay(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    """``run_timer`` waits (TIMER_STARTUP_DELAY_SECONDS) before the handler, not after it."""
    _process_age(monkeypatch, 0.0)
    seen: list[int] = []

    async def handler() -> None:
        seen.append(len(sleeps))

    await invocation.run_timer("renew_subscriptions", Ctx(), handler)  # type: ignore[arg-type]
    assert seen == [1]
    assert 2.0 < sleeps[0] <= 3.0
