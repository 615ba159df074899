"""Publish an event so each handler's effect happens once, however often the event is delivered.

Used by the queue processor (source ``notification``) and by delta catch-up (source ``delta``): claim
a marker per matching handler, publish to the claimed ones only (the rest are in the bus's skip set),
then mark successes done and release failures so only those run again on redelivery.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.events.bus import EventBus, HandlerOutcome
from shared.events.dedupe import DedupeStore
from shared.events.model import Event


@dataclass(frozen=True)
class DispatchResult:
    """What happened to one event: handlers run now, already done before, or busy elsewhere."""

    event: Event
    ran: tuple[HandlerOutcome, ...]
    already_done: frozenset[str]
    busy: frozenset[str]

    @property
    def failed(self) -> tuple[str, ...]:
        """Handlers that still have to run: failed/timed out now, or claimed by another worker."""
        return tuple(o.name for o in self.ran if o.status in ("failed", "timeout")) + tuple(sorted(self.busy))

    @property
    def duplicate(self) -> bool:
        """Every matching handler had completed before: the event caused no effect this time."""
        return bool(self.already_done) and not self.ran and not self.busy


class ExactlyOnceDispatcher:
    """The bus plus dedupe markers: at-least-once delivery in, exactly-once handler effects out."""

    def __init__(self, bus: EventBus, dedupe: DedupeStore) -> None:
        self.bus = bus
        self._dedupe = dedupe

    async def dispatch(self, event: Event) -> DispatchResult:
        """Run the handlers that have not completed for ``event.id``; storage failures raise
        ``TransientError`` before any handler ran."""
        registrations = self.bus.handlers_for(event.type)
        claims = await self._dedupe.claim(event.id, {r.name: r.timeout for r in registrations})
        acquired = {h: c for h, c in claims.items() if c.state == "acquired"}
        done = frozenset(h for h, c in claims.items() if c.state == "done")
        busy = frozenset(h for h, c in claims.items() if c.state == "busy")
        if not acquired:
            return DispatchResult(event, (), done, busy)
        result = await self.bus.publish(event, skip=done | busy)
        ran = tuple(o for o in result.outcomes if o.status != "skipped")
        failed = [acquired[o.name] for o in ran if o.status != "ok"]
        await asyncio.gather(*(self._dedupe.release(c) for c in failed))
        await self._dedupe.complete([acquired[o.name] for o in ran if o.status == "ok"])
        return DispatchResult(event, ran, done, busy)
