"""Reconcile: make the desired subscriptions exist, replace changed ones, remove those no longer wanted.

Only desired-state subscriptions are touched (ad hoc ones are kept). Work on a resource happens under its
lease, so two reconciles at once create each subscription once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shared.concurrency import gather_bounded
from shared.errors import AppError
from shared.subscriptions.desired import DesiredSubscription
from shared.subscriptions.records import SubscriptionRecord
from shared.subscriptions.steps import GONE, SubscriptionSteps, describe
from shared.telemetry import get_logger

log = get_logger("subscriptions")

ReconcileOutcome = Literal["created", "removed", "unchanged", "busy", "failed"]


@dataclass(frozen=True)
class ReconcileResult:
    """Resources per outcome; ``busy`` ones were being handled by another worker."""

    created: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class SubscriptionReconciler:
    """``reconcile()``: converge every desired or formerly desired resource, each under its own lease."""

    def __init__(self, steps: SubscriptionSteps, desired: Sequence[DesiredSubscription]) -> None:
        self._steps = steps
        self._desired = {d.spec.resource: d for d in desired}

    async def reconcile(self) -> ReconcileResult:
        """Create missing desired subscriptions, replace changed ones, remove unwanted desired-state ones."""
        bound = {row.resource for row in await self._steps.origins.all() if row.origin == "desired"}
        resources = sorted(bound | set(self._desired))
        outcomes = await gather_bounded(resources, self._steps.config.concurrency, self._reconcile_one)
        grouped: dict[ReconcileOutcome, list[str]] = {}
        for resource, outcome in zip(resources, outcomes, strict=True):
            grouped.setdefault(outcome, []).append(resource)
        result = ReconcileResult(**{outcome: tuple(items) for outcome, items in grouped.items()})
        log.info("reconciled subscriptions: %s", result)
        return result

    async def _reconcile_one(self, resource: str) -> ReconcileOutcome:
        try:
            async with self._steps.hold(f"resource:{resource}") as held:
                if not held:
                    return "busy"
                return await self._converge(resource, self._desired.get(resource))
        except AppError as error:
            log.warning("reconcile of %s failed: %s", resource, describe(error))
            return "failed"

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
