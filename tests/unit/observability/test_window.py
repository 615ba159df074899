"""The in-process statistics window: correct summaries in fixed memory."""

from __future__ import annotations

import sys

import pytest

from shared.metrics import EventWindow, Reservoir, StatsWindow


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_reservoir_summarises_min_max_avg_and_percentiles() -> None:
    """1..100 gives min 1, max 100, avg 50.5, p50 50, p95 95, p99 99 (nearest rank)."""
    reservoir = Reservoir(256)
    for value in range(1, 101):
        reservoir.add(float(value))
    assert reservoir.summary() == {
        "count": 100,
        "window": 100,
        "min": 1.0,
        "max": 100.0,
        "avg": 50.5,
        "p50": 50.0,
        "p95": 95.0,
        "p99": 99.0,
    }


def test_reservoir_keeps_only_the_latest_samples_in_fixed_memory() -> None:
    """After 100,000 samples the buffer is still its initial size and summarises only the newest ones."""
    reservoir = Reservoir(1024)
    reservoir.add(0.0)
    size = sys.getsizeof(reservoir._values)
    for value in range(100_000):
        reservoir.add(float(value))
    summary = reservoir.summary()
    assert sys.getsizeof(reservoir._values) == size
    assert summary["count"] == 100_001
    assert summary["window"] == 1024
    assert summary["min"] == 100_000 - 1024


def test_empty_reservoir_reports_no_samples() -> None:
    """A metric with no samples yet says so instead of inventing zeros."""
    assert Reservoir(8).summary() == {"count": 0, "window": 0}


def test_event_window_forgets_buckets_older_than_the_window() -> None:
    """Events count in their bucket; once the window has moved past them they are gone."""
    clock = Clock()
    window = EventWindow(window_seconds=60, bucket_seconds=10, clock=clock)
    window.add(3)
    clock.now += 30
    window.add()
    assert window.series() == [0, 0, 3, 0, 0, 1]
    clock.now += 45
    assert sum(window.series()) == 1
    clock.now += 60
    assert sum(window.series()) == 0


@pytest.mark.parametrize("kind", ["observe", "count"])
def test_stats_window_caps_the_number_of_series(kind: str) -> None:
    """Names beyond ``max_series`` are dropped, so unexpected names cannot grow memory without bound."""
    stats = StatsWindow(max_series=4, samples=8)
    for i in range(100):
        getattr(stats, kind)(f"metric-{i}", 1)
    snapshot = stats.snapshot()
    section = snapshot["distributions"] if kind == "observe" else snapshot["events"]
    assert sorted(section) == [f"metric-{i}" for i in range(4)]


def test_snapshot_reports_distributions_and_event_series() -> None:
    """The snapshot carries the window's shape, each distribution's summary and each event's total and series."""
    clock = Clock()
    stats = StatsWindow(window_seconds=30, bucket_seconds=10, clock=clock)
    stats.observe("graph.call.ms", 12.0)
    stats.count("graph.429", 2)
    snapshot = stats.snapshot()
    assert snapshot["window_seconds"] == 30
    assert snapshot["distributions"]["graph.call.ms"]["p95"] == 12.0
    assert snapshot["events"]["graph.429"] == {"total": 2, "series": [0, 0, 2]}
