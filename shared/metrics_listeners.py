"""The app's metrics as listeners of the generic resilience package, which itself knows no metrics.

Attached where the breakers are built (the wiring); records exactly what the breaker used to record
itself: the ``breaker.state`` gauge on every state read or write, a ``breaker.transitions`` count on
every state this instance wrote.
"""

from __future__ import annotations

from shared import metrics
from shared.resilience.breaker_events import BreakerListener
from shared.resilience.breaker_rows import State


class BreakerMetrics(BreakerListener):
    """Breaker events to ``shared.metrics`` (rejections are counted per workload by the Graph gateway)."""

    def state_observed(self, key: str, state: State) -> None:
        metrics.note_breaker_state(key, state.value)

    def state_changed(self, key: str, old: State, new: State) -> None:
        metrics.record_breaker_transition(key, new.value)
