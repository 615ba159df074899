"""The app's metrics as a listener of the generic resilience package, which itself knows no metrics.

Not re-exported by ``shared.metrics`` (it imports the breaker's types, which must stay off the app's import
path). Attached where the breakers are built (the wiring); records exactly what the breaker used to record
itself: the ``breaker.state`` gauge on every state read or write, a ``breaker.transitions`` count on
every state this instance wrote.
"""

from __future__ import annotations

from shared.metrics.record import note_breaker_state, record_breaker_transition
from shared.resilience.breaker_events import BreakerListener
from shared.resilience.breaker_rows import State


class BreakerMetrics(BreakerListener):
    """Breaker events to ``shared.metrics`` (rejections are counted per workload by the Graph gateway)."""

    def state_observed(self, key: str, state: State) -> None:
        note_breaker_state(key, state.value)

    def state_changed(self, key: str, old: State, new: State) -> None:
        record_breaker_transition(key, new.value)
