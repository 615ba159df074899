"""Users notifications as signals: the dispatcher the queue processor and the delta catch-up use when the
directory is mirrored. A ``users.*`` event from them names no version (Graph sends no etag for users), so
instead of publishing it the dispatcher signals the mirror, whose next round publishes what changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from shared.events.bus import EventBus
from shared.events.dedupe import DedupeStore
from shared.events.dispatch import DispatchResult, ExactlyOnceDispatcher
from shared.events.model import Event


class SignalingDispatcher(ExactlyOnceDispatcher):
    """``users.*`` → ``signal()``; every other event is dispatched as usual."""

    def __init__(self, bus: EventBus, dedupe: DedupeStore, signal: Callable[[], Awaitable[None]]) -> None:
        super().__init__(bus, dedupe)
        self._signal = signal

    async def dispatch_many(self, events: Sequence[Event]) -> list[DispatchResult]:
        """The users events of a batch become one signal; the others are dispatched together, as usual.
        A storage failure of the signal raises: the message is retried and the signal is not lost."""
        signals = [_is_signal(event) for event in events]
        if any(signals):
            await self._signal()
        rest = [event for event, signal in zip(events, signals, strict=True) if not signal]
        others = iter(await super().dispatch_many(rest) if rest else [])
        return [
            DispatchResult(event, (), frozenset(), frozenset()) if signal else next(others)
            for event, signal in zip(events, signals, strict=True)
        ]


def _is_signal(event: Event) -> bool:
    """A users event of a notification, or of the subscription catch-up (the mirror's own carry a version)."""
    return (event.type.startswith("users.") and event.source == "notification") or _catchup_user(event)


def _catchup_user(event: Event) -> bool:
    """A users event of the subscription catch-up (the mirror's own events carry a version)."""
    return event.type.startswith("users.") and event.source == "delta" and event.version is None
