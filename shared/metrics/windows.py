"""The bounded in-process window the status page reads: fixed ring buffers, so memory cannot grow.

Per metric, ``Reservoir`` keeps the latest samples (min/max/avg/p50/p95/p99) and ``EventWindow`` counts
events per bucket over the last few minutes; ``StatsWindow`` names them, at most ``max_series`` of each.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any


class Reservoir:
    """The latest ``size`` samples of one metric in a ring buffer, plus the count of all samples ever."""

    def __init__(self, size: int) -> None:
        self._values = array("d", [0.0]) * size
        self._next = 0
        self.count = 0
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values[self._next] = value
            self._next = (self._next + 1) % len(self._values)
            self.count += 1

    def summary(self) -> dict[str, float | int]:
        """count (all time), window (samples summarised), min, max, avg, p50, p95, p99 (nearest rank)."""
        with self._lock:
            held = min(self.count, len(self._values))
            values = sorted(self._values[:held])
            count = self.count
        if not values:
            return {"count": 0, "window": 0}

        def rank(p: float) -> float:
            return values[max(0, math.ceil(p * len(values)) - 1)]

        return {
            "count": count,
            "window": len(values),
            "min": values[0],
            "max": values[-1],
            "avg": sum(values) / len(values),
            "p50": rank(0.50),
            "p95": rank(0.95),
            "p99": rank(0.99),
        }


class EventWindow:
    """Event counts per ``bucket_seconds`` over the last ``window_seconds``: a fixed ring of buckets."""

    def __init__(self, window_seconds: float, bucket_seconds: float, clock: Callable[[], float]) -> None:
        self.bucket_seconds = bucket_seconds
        self._slots = max(1, math.ceil(window_seconds / bucket_seconds))
        self._ids = [-1] * self._slots
        self._counts = [0] * self._slots
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        bucket = int(self._clock() // self.bucket_seconds)
        slot = bucket % self._slots
        with self._lock:
            if self._ids[slot] != bucket:
                self._ids[slot], self._counts[slot] = bucket, 0
            self._counts[slot] += n

    def series(self) -> list[int]:
        """Counts per bucket, oldest first, ending with the current bucket."""
        current = int(self._clock() // self.bucket_seconds)
        with self._lock:
            by_id = dict(zip(self._ids, self._counts, strict=True))
        return [by_id.get(b, 0) for b in range(current - self._slots + 1, current + 1)]


class StatsWindow:
    """Named reservoirs and event windows, created on first use, at most ``max_series`` of each."""

    def __init__(
        self,
        *,
        samples: int = 1024,
        window_seconds: float = 300.0,
        bucket_seconds: float = 10.0,
        max_series: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.samples = samples
        self.window_seconds = window_seconds
        self.bucket_seconds = bucket_seconds
        self.max_series = max_series
        self._clock = clock
        self._reservoirs: dict[str, Reservoir] = {}
        self._events: dict[str, EventWindow] = {}
        self._lock = threading.Lock()

    def observe(self, name: str, value: float) -> None:
        """Add a sample (dropped if ``name`` would be a series beyond ``max_series``)."""
        reservoir = self._reservoirs.get(name)
        if reservoir is None:
            with self._lock:
                if name not in self._reservoirs and len(self._reservoirs) >= self.max_series:
                    return
                reservoir = self._reservoirs.setdefault(name, Reservoir(self.samples))
        reservoir.add(value)

    def count(self, name: str, n: int = 1) -> None:
        """Count ``n`` events now (dropped if ``name`` would be a series beyond ``max_series``)."""
        window = self._events.get(name)
        if window is None:
            with self._lock:
                if name not in self._events and len(self._events) >= self.max_series:
                    return
                window = self._events.setdefault(
                    name, EventWindow(self.window_seconds, self.bucket_seconds, self._clock)
                )
        window.add(n)

    def snapshot(self) -> dict[str, Any]:
        """Distributions and event counts (with their per-bucket series), JSON-ready."""
        with self._lock:
            reservoirs, events = dict(self._reservoirs), dict(self._events)
        return {
            "window_seconds": self.window_seconds,
            "bucket_seconds": self.bucket_seconds,
            "distributions": {name: r.summary() for name, r in sorted(reservoirs.items())},
            "events": {name: _event_summary(w.series()) for name, w in sorted(events.items())},
        }

    def clear(self) -> None:
        """Forget every series (tests start from an empty window)."""
        with self._lock:
            self._reservoirs.clear()
            self._events.clear()


def _event_summary(series: list[int]) -> dict[str, Any]:
    return {"total": sum(series), "series": series}
