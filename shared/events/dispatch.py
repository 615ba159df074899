"""Publish an event so each handler's effect happens once, however often the event is delivered.

Used by the queue processor (source ``notification``) and by delta catch-up (source ``delta``): claim
a marker per matching handler, publish to the claimed ones only (the rest are in the bus's skip set),
mark each success done the moment it succeeds, and release failures so only those run again.

Storage outages are waited out in place, within ``OutageWait.budget_seconds`` of the dispatch's start:
a claim that cannot be written is retried; a handler that failed because Storage did not answer (the
forward's send) runs again under the same owner token (its own claim is taken back, not ``busy``); a
completion that cannot be written is retried without running the handler again. Only past the budget
does a failure go back to the caller, and only a completion that failed past the budget can make a
redelivery repeat an effect: that is the remaining duplicate window (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from shared.events.bus import FAILED, EventBus, HandlerOutcome
from shared.events.dedupe import Claim, DedupeStore
from shared.events.model import Event
from shared.storage import OutageWait


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
        return tuple(o.name for o in self.ran if o.status in FAILED) + tuple(sorted(self.busy))

    @property
    def duplicate(self) -> bool:
        """Every once-handler had completed before (idempotent ones may have run again)."""
        return bool(self.already_done) and not self.busy and all(o.name in self.idempotent for o in self.ran)

    @property
    def outage(self) -> bool:
        """Some handler failed only because Storage did not answer."""
        return any(o.outage for o in self.ran)


class ExactlyOnceDispatcher:
    """The bus plus dedupe markers: at-least-once delivery in, exactly-once handler effects out."""

    def __init__(self, bus: EventBus, dedupe: DedupeStore, outage_wait: OutageWait | None = None) -> None:
        self.bus = bus
        self._dedupe = dedupe
        self._wait = outage_wait or OutageWait()

    async def dispatch(self, event: Event) -> DispatchResult:
        """Run the once-handlers that have not completed for ``event.id`` and every idempotent handler;
        ``StorageUnavailableError`` when the claims could not be written within the outage budget.

        Idempotent handlers (cache invalidation) skip the markers: running them again is harmless, and a
        dedupe identity that cannot tell a redelivery from a new change (no etag) must never suppress them.
        """
        deadline = time.monotonic() + self._wait.budget_seconds
        owner = uuid.uuid4().hex
        delay = self._wait.first_delay
        while True:
            result = await self._attempt(event, owner, deadline)
            remaining = deadline - time.monotonic()
            if not result.outage or remaining <= 0:
                return result
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self._wait.max_delay)

    async def _attempt(self, event: Event, owner: str, deadline: float) -> DispatchResult:
        registrations = self.bus.handlers_for(event.type)
        once = {r.name: r.timeout for r in registrations if r.once}
        claims = await self._wait.run(lambda: self._dedupe.claim(event.id, once, owner), deadline) if once else {}
        acquired = {h: c for h, c in claims.items() if c.state == "acquired"}
        done = frozenset(h for h, c in claims.items() if c.state == "done")
        busy = frozenset(h for h, c in claims.items() if c.state == "busy")
        idempotent = frozenset(r.name for r in registrations if not r.once)
        if not acquired and not idempotent:
            return DispatchResult(event, (), done, busy)

        async def record_done(handler: str) -> None:
            claim = acquired.get(handler)
            if claim is not None:
                await self._wait.run(lambda: self._complete(claim), deadline)

        result = await self.bus.publish(event, skip=done | busy, on_success=record_done)
        ran = tuple(o for o in result.outcomes if o.status != "skipped")
        # Handlers that failed are released so a redelivery runs them; one that ran but could not be
        # recorded ("unrecorded") keeps its claim, so no other copy runs it again within the lease.
        failed = [acquired[o.name] for o in ran if o.status in ("failed", "timeout") and o.name in acquired]
        await asyncio.gather(*(self._dedupe.release(c) for c in failed))
        return DispatchResult(event, ran, done, busy, idempotent)

    async def _complete(self, claim: Claim) -> None:
        await self._dedupe.complete([claim])
