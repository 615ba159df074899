"""Publish events so each handler's effect happens once, however often an event is delivered.

Used by the queue processor (a whole message's events at once, ``dispatch_many``, source
``notification``) and by delta catch-up and the mirror (``dispatch``, one event): claim a marker per
matching handler (one transaction per marker partition for the whole batch), publish to the claimed
ones only (the rest are in the bus's skip set), release failures so only those run again, and at the
end record the successes: with one row for the whole dispatch when nothing failed (its owner's,
``DedupeStore.complete_owner``), else row by row.

Storage outages are waited out in place, within ``OutageWait.budget_seconds`` of the dispatch's start:
a claim that cannot be written is retried; a handler that failed because Storage did not answer (the
forward's send) runs again under the same owner token (its own claim is taken back, not ``busy``), and a
handler that succeeded in an earlier attempt is not run again; a completion that cannot be written is
retried without running the handler again. Only past the budget
does a failure go back to the caller, and only a completion that failed past the budget can make a
redelivery repeat an effect: that is the remaining duplicate window (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shared.events.bus import FAILED, EventBus, HandlerOutcome
from shared.events.dedupe import Claim, ClaimRequest, DedupeStore
from shared.events.model import Event
from shared.storage import OutageWait
from shared.telemetry import get_logger

log = get_logger("events.dispatch")


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
        """``dispatch_many`` for one event (delta catch-up, the mirror)."""
        (result,) = await self.dispatch_many([event])
        return result

    async def dispatch_many(self, events: Sequence[Event]) -> list[DispatchResult]:
        """Run, for each event, the once-handlers that have not completed for ``event.id`` and every
        idempotent handler; one result per event, in order. ``StorageUnavailableError`` when the claims
        could not be written within the outage budget.

        Idempotent handlers (cache invalidation) skip the markers: running them again is harmless, and a
        dedupe identity that cannot tell a redelivery from a new change (no etag) must never suppress them.
        Events sharing an id (a notification repeated in one message) run once; the copies are duplicates.
        """
        deadline = time.monotonic() + self._wait.budget_seconds
        owner = uuid.uuid4().hex
        delay = self._wait.first_delay
        unique = list({e.id: e for e in reversed(events)}.values())[::-1]  # first copy of each id, in order
        results: dict[str, DispatchResult] = {}
        succeeded: dict[tuple[str, str], Claim] = {}  # claims whose handler succeeded, not yet recorded
        pending = unique
        while True:
            for result in await self._attempt(pending, owner, deadline, succeeded):
                results[result.event.id] = result
            pending = [r.event for r in results.values() if r.outage]
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self._wait.max_delay)
        if succeeded:
            results = await self._record(results, succeeded, owner, deadline)
        answers: list[DispatchResult] = []
        seen: set[str] = set()
        for event in events:
            answers.append(results[event.id] if event.id not in seen else self._copy(event))
            seen.add(event.id)
        return answers

    async def _record(
        self, results: dict[str, DispatchResult], succeeded: dict[tuple[str, str], Claim], owner: str, deadline: float
    ) -> dict[str, DispatchResult]:
        """Mark the successes done: one owner row when no claimed handler failed (so the row covers only
        handlers that ran), else row by row. If that fails, the successes turn ``unrecorded``: they keep
        their claims, so no other copy runs them again within the lease."""
        clean = not any(o.status in FAILED for r in results.values() for o in r.ran)
        try:
            if clean:
                await self._wait.run(lambda: self._dedupe.complete_owner(owner), deadline)
            else:
                await self._wait.run(lambda: self._dedupe.complete(list(succeeded.values())), deadline)
        except Exception as error:
            log.warning("could not record %d handler runs: %s", len(succeeded), type(error).__name__)
            return {key: _unrecorded(r, succeeded, error) for key, r in results.items()}
        return results

    def _copy(self, event: Event) -> DispatchResult:
        """A second copy of an event in the same batch: its once-handlers count as done."""
        once = frozenset(r.name for r in self.bus.handlers_for(event.type) if r.once)
        return DispatchResult(event, (), once, frozenset())

    async def _attempt(
        self, events: Sequence[Event], owner: str, deadline: float, succeeded: dict[tuple[str, str], Claim]
    ) -> list[DispatchResult]:
        """Claim, publish and release failures once; adds this attempt's successes to ``succeeded`` (whose
        handlers an earlier attempt ran already count as done)."""
        registrations = [self.bus.handlers_for(e.type) for e in events]
        requests: list[ClaimRequest] = [
            (e.id, {r.name: r.timeout for r in regs if r.once and (e.id, r.name) not in succeeded})
            for e, regs in zip(events, registrations, strict=True)
        ]
        claims = await self._wait.run(lambda: self._dedupe.claim_many(requests, owner), deadline)
        by_event = [{h: claims[(e.id, h)] for h in once} for e, (_, once) in zip(events, requests, strict=True)]
        done = [
            frozenset(h for h, c in mine.items() if c.state == "done") | {h for i, h in succeeded if i == e.id}
            for e, mine in zip(events, by_event, strict=True)
        ]
        busy = [frozenset(h for h, c in mine.items() if c.state == "busy") for mine in by_event]
        published = await self.bus.publish_many(events, skip=[d | b for d, b in zip(done, busy, strict=True)])
        results: list[DispatchResult] = []
        failed: list[Claim] = []
        for i, (event, publish) in enumerate(zip(events, published, strict=True)):
            ran = tuple(o for o in publish.outcomes if o.status != "skipped")
            idempotent = frozenset(r.name for r in registrations[i] if not r.once)
            results.append(DispatchResult(event, ran, done[i], busy[i], idempotent))
            acquired = {h: c for h, c in by_event[i].items() if c.state == "acquired"}
            succeeded.update(
                {(event.id, o.name): acquired[o.name] for o in ran if o.status == "ok" and o.name in acquired}
            )
            # Handlers that failed are released so a redelivery runs them.
            failed += [acquired[o.name] for o in ran if o.status in ("failed", "timeout") and o.name in acquired]
        await asyncio.gather(*(self._dedupe.release(c) for c in failed))
        return results


def _unrecorded(result: DispatchResult, succeeded: dict[tuple[str, str], Claim], error: Exception) -> DispatchResult:
    """``result`` with its recorded-to-be successes turned ``unrecorded`` (ran, but not marked done)."""
    reason = f"ran, not recorded: {type(error).__name__}"
    ran = tuple(
        HandlerOutcome(o.name, "unrecorded", o.duration_ms, reason)
        if o.status == "ok" and (result.event.id, o.name) in succeeded
        else o
        for o in result.ran
    )
    return replace(result, ran=ran)
