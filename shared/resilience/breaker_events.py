"""What a breaker tells the rest of the app, as pybreaker's listeners do: this package stays generic
(no metrics, no logging policy of the app) and whoever builds the breakers subscribes.

Listeners run inline on the caller's task and must not block or raise: keep them to counters and gauges.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.resilience.breaker_rows import State


class BreakerListener:
    """Subclass and override the events you need; every method does nothing by default."""

    def state_observed(self, key: str, state: State) -> None:
        """This instance read or wrote the breaker's stored state (``closed``, ``open`` or ``isolated``:
        half-open is not stored). Called on every refresh, so the latest call says what the instance knows."""

    def state_changed(self, key: str, old: State, new: State) -> None:
        """This instance wrote a new period: a trip, a probe's decision or an operator's action."""

    def call_rejected(self, key: str, retry_after: float | None) -> None:
        """A call was refused without reaching the dependency (open, isolated, probe taken elsewhere, or
        the store unreachable under ``fail_closed``)."""

    def storage_lost(self, key: str, error: Exception) -> None:
        """The store became unreachable: the breaker serves from its fallback (or refuses) for a while."""

    def storage_restored(self, key: str) -> None:
        """The store answered again after an outage: the shared state is back in use."""


class BreakerListeners(BreakerListener):
    """Several listeners as one, called in order."""

    def __init__(self, listeners: Iterable[BreakerListener] = ()) -> None:
        self._listeners = tuple(listeners)

    def state_observed(self, key: str, state: State) -> None:
        for listener in self._listeners:
            listener.state_observed(key, state)

    def state_changed(self, key: str, old: State, new: State) -> None:
        for listener in self._listeners:
            listener.state_changed(key, old, new)

    def call_rejected(self, key: str, retry_after: float | None) -> None:
        for listener in self._listeners:
            listener.call_rejected(key, retry_after)

    def storage_lost(self, key: str, error: Exception) -> None:
        for listener in self._listeners:
            listener.storage_lost(key, error)

    def storage_restored(self, key: str) -> None:
        for listener in self._listeners:
            listener.storage_restored(key)
