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
    idempotent: frozenset[str] = frozenset()

    @property
    def failed(self) -> tuple[str, ...]:
        """Handlers that still have to run: failed/timed out now, or claimed by another worker."""
        return tuple(o.name for o in self.ran if o.status in ("failed", "timeout")) + tuple(sorted(self.busy))

    @property
    def duplicate(self) -> bool:
        """Every once-handler had completed before (idempotent ones may have run again)."""
        return bool(self.already_done) and not self.busy and all(o.name in self.idempotent for o in self.ran)


class ExactlyOnceDispatcher:
    """The bus plus dedupe markers: at-least-once delivery in, exactly-once handler effects out."""

    def __init__(self, bus: EventBus, dedupe: DedupeStore) -> None:
        self.bus = bus
        self._dedupe = dedupe

    async def dispatch(self, event: Event) -> DispatchResult:
        """Run the once-handlers that have not completed for ``event.id`` and every idempotent handler;
        storage failures raise ``TransientError`` before any handler ran.

        Idempotent handlers (cache invalidation) skip the markers: running them again is harmless, and a
        dedupe identity that cannot tell a redelivery from a new change (no etag) must never suppress them.
        """
        registrations = self.bus.handlers_for(event.type)
        once = {r.name: r.timeout for r in registrations if r.once}
        claims = await self._dedupe.claim(event.id, once) if once else {}
        acquired = {h: c for h, c in claims.items() if c.state == "acquired"}
        done = frozenset(h for h, c in claims.items() if c.state == "done")
        busy = frozenset(h for h, c in claims.items() if c.state == "busy")
        idempotent = frozenset(r.name for r in registrations if not r.once)
        if not acquired and not idempotent:
            return DispatchResult(event, (), done, busy)
        result = await self.bus.publish(event, skip=done | busy)
        ran = tuple(o for o in result.outcomes if o.status != "skipped")
        failed = [acquired[o.name] for o in ran if o.status != "ok" and o.name in acquired]
        await asyncio.gather(*(self._dedupe.release(c) for c in failed))
        await self._dedupe.complete([acquired[o.name] for o in ran if o.status == "ok" and o.name in acquired])
        return DispatchResult(event, ran, done, busy, idempotent)
