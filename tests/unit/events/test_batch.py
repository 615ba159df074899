"""The batch skeleton's tally: each processor's result counts its own outcomes, renamed where they differ."""

from __future__ import annotations

from collections import Counter

from shared.events.lifecycle import LifecycleResult
from shared.events.processor import ProcessResult


def test_results_count_their_own_outcomes_and_the_shared_ones() -> None:
    outcomes = Counter({"published": 2, "duplicate": 1, "poisoned": 1, "failed": 1, "handled": 9})
    assert ProcessResult.tally(5, outcomes) == ProcessResult(items=5, published=2, duplicates=1, poisoned=1, failed=1)
    lifecycle = Counter({"handled": 1, "unknown": 2, "poisoned": 1, "published": 9})
    assert LifecycleResult.tally(4, lifecycle) == LifecycleResult(items=4, handled=1, unknown=2, poisoned=1)
