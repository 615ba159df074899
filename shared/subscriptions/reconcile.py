"""Reconcile: make the desired subscriptions exist, replace changed ones, remove those no longer wanted.

Only desired-state subscriptions are touched (ad hoc ones are kept). Mailbox fleets are first expanded into
one entry per member (``fleet.expand``). One snapshot of the origin rows and the registry settles every
resource that already has exactly one matching subscription without further Table calls, so a reconcile of
a 2,000-mailbox fleet in which one member changed costs work for that member only (plus the member list and
two queries). Work on an unsettled resource happens under its lease, so two reconciles at once create each
subscription once.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from shared.concurrency import gather_bounded
from shared.errors import AppError, NotFoundError, UnavailableError
from shared.subscriptions.desired import DesiredSubscription
from shared.subscriptions.fleet import AbsentMailbox, Expansion, FleetDirectory, FleetStore, FleetSummary, expand
from shared.subscriptions.records import SubscriptionRecord
from shared.subscriptions.steps import GONE, SubscriptionSteps, describe
from shared.telemetry import get_logger

log = get_logger("subscriptions")

ReconcileOutcome = Literal["created", "removed", "unchanged", "busy", "failed", "no_mailbox", "deferred"]


@dataclass(frozen=True)
class ReconcileResult:
    """Resources per outcome; ``busy`` ones were being handled by another worker; ``no_mailbox``: fleet members
    whose mailbox Graph would not subscribe (recorded, retried on a backoff); ``deferred``: not started
    before the run's budget ran out (the next run takes them). ``fleets``: members per fleet."""

    created: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    no_mailbox: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    fleets: dict[str, int] = field(default_factory=dict)


class SubscriptionReconciler:
    """``reconcile()``: converge every desired or formerly desired resource, each under its own lease."""

    def __init__(
        self,
        steps: SubscriptionSteps,
        desired: Sequence[DesiredSubscription],
        *,
        directory: FleetDirectory | None = None,
        fleet_store: FleetStore | None = None,
    ) -> None:
        self._steps = steps
        self._entries = tuple(desired)
        self._directory = directory
        self._fleet_store = fleet_store

    async def reconcile(self) -> ReconcileResult:
        """Create missing desired subscriptions, replace changed ones, remove unwanted desired-state ones."""
        expansion = await expand(self._entries, self._directory)
        desired = {d.spec.resource: d for d in expansion.desired}
        steps = self._steps
        rows = [row for row in await steps.origins.all() if row.origin == "desired"]
        records = {record.id: record for record in await steps.registry.list_all()}
        bound: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            bound[row.resource].append(row.subscription_id)
        absent = await self._fleet_store.absent() if self._fleet_store and expansion.fleet_resources else {}

        def settled(resource: str) -> bool:
            ids, wanted = bound.get(resource, []), desired.get(resource)
            return wanted is not None and len(ids) == 1 and ids[0] in records and self._matches(records[ids[0]], wanted)

        # An incomplete expansion (a fleet's members unreadable) removes nothing this run.
        candidates = set(desired) | (set(bound) if expansion.complete else set())
        unsettled = sorted(r for r in candidates if not settled(r))
        deadline = time.monotonic() + steps.config.reconcile_budget.total_seconds()

        async def one(resource: str) -> ReconcileOutcome:
            if time.monotonic() >= deadline:
                return "deferred"
            return await self._reconcile_one(resource, desired.get(resource), expansion, absent)

        outcomes = await gather_bounded(unsettled, steps.config.concurrency, one)
        grouped: dict[ReconcileOutcome, list[str]] = {"unchanged": sorted(candidates - set(unsettled))}
        for resource, outcome in zip(unsettled, outcomes, strict=True):
            grouped.setdefault(outcome, []).append(resource)
        fleets = {fleet: len(members) for fleet, members in expansion.members.items()}
        result = ReconcileResult(**{outcome: tuple(sorted(items)) for outcome, items in grouped.items()}, fleets=fleets)
        await self._save_summaries(expansion, grouped)
        log.info(
            "reconciled subscriptions: created %d, removed %d, unchanged %d, busy %d, failed %d, no mailbox %d, "
            "deferred %d",
            *(len(items) for items in (result.created, result.removed, result.unchanged, result.busy)),
            *(len(items) for items in (result.failed, result.no_mailbox, result.deferred)),
        )
        return result

    async def members(self, fleet: str) -> list[dict[str, object]]:
        """A fleet's member mailboxes (read from Graph now) and each one's state: ``subscribed`` (with the
        subscription's id and expiration), ``no_mailbox`` (reason, next try) or ``pending``."""
        entry = next((d for d in self._entries if d.spec.is_fleet and d.spec.resource == fleet), None)
        if entry is None:
            raise NotFoundError(f"no fleet {fleet!r} in GRAPH_SUBSCRIPTIONS")
        expansion = await expand([entry], self._directory)
        if not expansion.complete:
            raise UnavailableError(f"the members of {fleet} could not be read")
        records = {r.id: r for r in await self._steps.registry.list_all()}
        bound = {
            row.resource: row.subscription_id for row in await self._steps.origins.all() if row.origin == "desired"
        }
        absent = await self._fleet_store.absent() if self._fleet_store else {}
        listed: list[dict[str, object]] = []
        for resource in expansion.members[fleet]:
            record = records.get(bound.get(resource, ""))
            waiting = absent.get(resource)
            if record is not None:
                state = {
                    "state": "subscribed",
                    "subscription_id": record.id,
                    "expiration": record.expiration.isoformat(),
                }
            elif waiting is not None:
                state = {"state": "no_mailbox", "reason": waiting.reason, "retry_at": waiting.retry_at.isoformat()}
            else:
                state = {"state": "pending"}
            listed.append({"resource": resource, **state})
        return listed

    async def reconcile_member(self, resource: str) -> ReconcileOutcome:
        """Converge one fleet member now, its backoff ignored and cleared (the ops tool's forced reconcile)."""
        expansion = await expand(self._entries, self._directory)
        desired = {d.spec.resource: d for d in expansion.desired}
        if resource not in expansion.fleet_resources:
            raise NotFoundError(f"{resource!r} is not a member of a fleet in GRAPH_SUBSCRIPTIONS")
        if self._fleet_store is not None:
            await self._fleet_store.clear_absent(resource)
        return await self._reconcile_one(resource, desired[resource], expansion, {})

    async def _save_summaries(self, expansion: Expansion, grouped: dict[ReconcileOutcome, list[str]]) -> None:
        """Each read fleet's counts, for the status page (a failure to save them is logged, not raised)."""
        if self._fleet_store is None or not expansion.members:
            return
        outcome_of = {resource: outcome for outcome, items in grouped.items() for resource in items}
        now = self._steps.clock()
        for fleet, members in expansion.members.items():
            counts = Counter(outcome_of.get(member, "unchanged") for member in members)
            summary = FleetSummary(
                fleet=fleet,
                members=len(members),
                subscribed=counts["created"] + counts["unchanged"],
                no_mailbox=counts["no_mailbox"],
                failed=counts["failed"],
                busy=counts["busy"],
                reconciled_at=now,
            )
            try:
                await self._fleet_store.save_summary(summary)
            except AppError as error:
                log.warning("fleet summary of %s not saved: %s", fleet, describe(error))

    async def _reconcile_one(
        self,
        resource: str,
        desired: DesiredSubscription | None,
        expansion: Expansion,
        absent: dict[str, AbsentMailbox],
    ) -> ReconcileOutcome:
        member = resource in expansion.fleet_resources
        waiting = absent.get(resource)
        now = self._steps.clock()
        if member and waiting is not None and waiting.retry_at > now:
            return "no_mailbox"  # asked recently; Graph is not asked again before the backoff ends
        try:
            async with self._steps.hold(f"resource:{resource}") as held:
                if not held:
                    return "busy"
                outcome = await self._converge(resource, desired)
        except NotFoundError as error:
            if not member or self._fleet_store is None:
                log.warning("reconcile of %s failed: %s", resource, describe(error))
                return "failed"
            recorded = await self._fleet_store.record_absent(resource, describe(error), waiting, now)
            if desired is not None:  # no subscription, so no catch-up: its failed baseline must not be retried
                await self._steps.catchup.forget(desired.spec)
            log.info("no mailbox to subscribe for %s (%s); next try %s", resource, error.message, recorded.retry_at)
            return "no_mailbox"
        except AppError as error:
            log.warning("reconcile of %s failed: %s", resource, describe(error))
            return "failed"
        if waiting is not None and self._fleet_store is not None:
            await self._fleet_store.clear_absent(resource)
        return outcome

    async def _converge(self, resource: str, desired: DesiredSubscription | None) -> ReconcileOutcome:
        """Under the resource's lease: keep one matching desired-state subscription, nothing else."""
        steps = self._steps
        records: list[SubscriptionRecord] = []
        for row in await steps.origins.desired_for(resource):
            record = await steps.registry.get(row.subscription_id)
            if record is None:  # an interrupted create or removal left the origin row behind
                await steps.origins.delete(row.subscription_id)
            else:
                records.append(record)
        matching = [r for r in records if desired is not None and self._matches(r, desired)]
        keeper = max(matching, key=lambda r: r.expiration, default=None)
        created = False
        if desired is not None and keeper is None:
            keeper = await steps.create(
                desired.spec, desired.change_types, "desired", desired.delivery, with_data=desired.with_data
            )
            created = True
        for record in records:
            if record is not keeper:
                await steps.remove(record)
        if desired is None:
            return "removed" if records else "unchanged"
        return "created" if created else "unchanged"

    def _matches(self, record: SubscriptionRecord, desired: DesiredSubscription) -> bool:
        notification_url, lifecycle_url = self._steps.urls(desired.delivery)
        return (
            record.change_types == desired.change_types
            and record.with_data == desired.with_data
            and record.notification_url == notification_url
            and record.lifecycle_url == lifecycle_url
            and record.status not in GONE
        )
