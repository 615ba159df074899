"""Renewal (the timer): keep every subscription alive, recreate the ones Graph lost, run pending catch-ups.

Subscriptions close to expiry are renewed to their resource's maximum lifetime; one Graph no longer knows
(404, or missing from Graph's list) is recreated with a new ``clientState`` and its resource caught up with
delta. A failure is recorded on the record and retried on the next tick. Each subscription is renewed under
its own lease, and its record is read again under it, so two runs at once renew it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from shared.concurrency import gather_bounded
from shared.errors import AppError, NotFoundError, UpstreamError
from shared.subscriptions.catchup import CatchupResult
from shared.subscriptions.records import SubscriptionRecord
from shared.subscriptions.steps import GONE, SubscriptionSteps, describe
from shared.telemetry import get_logger

log = get_logger("subscriptions")

RenewOutcome = Literal["renewed", "recreated", "failed", "skipped"]


@dataclass(frozen=True)
class RenewResult:
    """Counts of one renewal run, plus the catch-ups it ran for recreated or pending resources."""

    renewed: int = 0
    recreated: int = 0
    failed: int = 0
    skipped: int = 0  # not due yet, or handled by another worker
    catchups: tuple[CatchupResult, ...] = ()


class SubscriptionRenewal:
    """``renew_due()`` for the timer, ``renew_one(id)`` for a renewal asked for by hand."""

    def __init__(self, steps: SubscriptionSteps) -> None:
        self._steps = steps

    async def renew_due(self, now: datetime | None = None) -> RenewResult:
        """Renew what is due or lost, recreate what Graph no longer has, then run pending catch-ups.

        A timer that fired late (``past_due``) needs nothing special: whatever is due now is renewed now.
        """
        steps = self._steps
        now = now or steps.clock()
        records = await steps.registry.list_all()
        lost = await self._lost(records)
        due = [r for r in records if r.id in lost or steps.is_due(r, now)]

        async def renew(record: SubscriptionRecord) -> RenewOutcome:
            return await self._renew_guarded(record.id, force=record.id in lost)

        outcomes = await gather_bounded(due, steps.config.concurrency, renew)
        catchups = await steps.catchup.run_pending()
        result = RenewResult(
            renewed=outcomes.count("renewed"),
            recreated=outcomes.count("recreated"),
            failed=outcomes.count("failed"),
            skipped=outcomes.count("skipped") + len(records) - len(due),
            catchups=tuple(catchups),
        )
        log.info("renewal run: %s", result)
        return result

    async def _lost(self, records: Sequence[SubscriptionRecord]) -> set[str]:
        """Records Graph no longer lists: expired or removed silently. Graph is listed *after* the registry
        was read, so a subscription created meanwhile cannot look lost. Renewing a lost one gets the 404
        that triggers its recreation (and confirms the loss); a failed listing only skips this check."""
        if not records:
            return set()
        try:
            live = await self._steps.graph.list_ids()
        except UpstreamError as error:
            log.warning("could not list Graph subscriptions; only due ones are checked: %s", describe(error))
            return set()
        return {r.id for r in records if r.id not in live}

    async def _renew_guarded(self, subscription_id: str, *, force: bool) -> RenewOutcome:
        """One subscription's renewal; a storage failure fails it alone, not the whole run."""
        try:
            return await self.renew_one(subscription_id, force=force)
        except AppError as error:
            log.warning("renewal of subscription %s failed: %s", subscription_id, describe(error))
            return "failed"

    async def renew_one(self, subscription_id: str, *, force: bool = False) -> RenewOutcome:
        """Renew (or recreate) one subscription under its lease if it is due, or whatever its state if forced."""
        steps = self._steps
        async with steps.hold(f"subscription:{subscription_id}") as held:
            if not held:
                return "skipped"
            record = await steps.registry.get(subscription_id)  # read again: another run may have renewed it
            if record is None or not (force or steps.is_due(record, steps.clock())):
                return "skipped"
            if record.status in GONE:
                return await self._recreate_or_record(record)
            try:
                await steps.renew(record)
            except NotFoundError:
                log.warning("subscription %s (%s) is gone from Graph: recreating it", record.id, record.resource)
                return await self._recreate_or_record(replace(record, status="removed"))
            except UpstreamError as error:
                await steps.record_failure(record, error, "failed")
                return "failed"
            return "renewed"

    async def _recreate_or_record(self, record: SubscriptionRecord) -> RenewOutcome:
        """Recreate a lost subscription; if that fails, remember it is lost so the next tick tries again."""
        try:
            await self._steps.recreate(record)
        except AppError as error:
            await self._steps.record_failure(record, error, "removed")
            return "failed"
        return "recreated"
