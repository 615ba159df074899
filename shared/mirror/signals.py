"""Users notifications as signals: the dispatcher the queue processor and the delta catch-up use when the
directory is mirrored. A ``users.*`` event from them names no version (Graph sends no etag for users), so
instead of publishing it the dispatcher signals the mirror, whose next round publishes what changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.events.bus import EventBus
from shared.events.dedupe import DedupeStore
from shared.events.dispatch import DispatchResult, ExactlyOnceDispatcher
from shared.events.model import Event


class SignalingDispatcher(ExactlyOnceDispatcher):
    """``users.*`` → ``signal()``; every other event is dispatched as usual."""

    def __init__(self, bus: EventBus, dedupe: DedupeStore, signal: Callable[[], Awaitable[None]]) -> None:
        super().__init__(bus, dedupe)
        self._signal = signal

    async def dispatch(self, event: Event) -> DispatchResult:
        if (event.type.startswith("users.") and event.source == "notification") or _catchup_user(event):
            await self._signal()  # a storage failure raises: the item is retried, the signal not lost
            return DispatchResult(event, (), frozenset(), frozenset())
        return await super().dispatch(event)


def _catchup_user(event: Event) -> bool:
    """A users event of the subscription catch-up (the mirror's own events carry a version)."""
    return event.type.startswith("users.") and event.source == "delta" and event.version is None
