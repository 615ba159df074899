"""What this process has measured so far: the module-level state every other part of ``metrics`` shares.

One process, one set of measurements: the record functions write here, the status page and the
observable instruments read here, and ``clear()`` empties it all at once (tests, between cases).
"""

from __future__ import annotations

from shared.metrics.expiry import ExpiryGauge
from shared.metrics.names import CACHE_RESULTS
from shared.metrics.windows import StatsWindow

WINDOW = StatsWindow()
EXPIRY = ExpiryGauge()
# Plain counts, reported by an observable counter: the L1-hit path cannot afford an SDK ``add``.
cache_answers = dict.fromkeys(CACHE_RESULTS, 0)
# The breaker state this instance last read or wrote, per breaker key (the ``breaker.state`` gauge).
breaker_states: dict[str, int] = {}


def clear() -> None:
    """Forget every measurement, in place (other modules hold references to these objects)."""
    WINDOW.clear()
    EXPIRY.clear()
    for result in cache_answers:
        cache_answers[result] = 0
    breaker_states.clear()
