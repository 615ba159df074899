"""``SubscriptionService``: make the desired subscriptions exist and keep every subscription alive.

- ``reconcile()`` creates the desired subscriptions that are missing and removes desired-state ones no
  longer wanted (ad hoc ones are kept). Work on a resource happens under its lease, so two reconciles at
  once create each subscription once.
- ``renew_due()`` (the timer) renews subscriptions close to expiry to their resource's maximum lifetime;
  one Graph no longer knows (404) is recreated with a new ``clientState`` and its resource caught up with
  delta. A failure is recorded on the record and retried on the next tick. Each subscription is renewed
  under its own lease, and its record is read again under it, so two runs at once renew it once.
- The lifecycle reactions (``LifecycleReactions``): reauthorize (renew as fallback), recreate and catch
  up, or catch up.

Every write order is chosen so a crash leaves something the next run heals: the origin row is written
before the registry record, a replacement is created before the old one is removed, and a resource is
marked for catch-up before its subscription is recreated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from shared.errors import AppError, InvalidInputError, NotFoundError, TransientError, UnavailableError, UpstreamError
from shared.events.notifications import LifecycleNotification
from shared.graph.subscriptions import GraphSubscriptions, NewSubscription, expiration_of
from shared.settings import Secret
from shared.subscriptions.catchup import CatchupResult, DeltaCatchup
from shared.subscriptions.clock import Clock, utcnow
from shared.subscriptions.desired import DesiredSubscription, ResourceSpec, parse_change_types, parse_resource
from shared.subscriptions.leases import LeaseStore
from shared.subscriptions.origins import Origin, OriginRow, OriginStore
from shared.subscriptions.records import SubscriptionRecord, SubscriptionRegistry, SubscriptionStatus
from shared.telemetry import get_logger

log = get_logger("subscriptions")

T = TypeVar("T")
RenewOutcome = Literal["renewed", "recreated", "failed", "skipped"]
ReconcileOutcome = Literal["created", "removed", "unchanged", "busy", "failed"]
# Statuses that make a subscription due whatever its expiration says.
_NEEDS_WORK: frozenset[SubscriptionStatus] = frozenset({"reauthorization_required", "failed", "removed", "expired"})
_GONE: frozenset[SubscriptionStatus] = frozenset({"removed", "expired"})


@dataclass(frozen=True)
class SubscriptionConfig:
    """Tunables (the lead maps them to settings).

    - ``renew_before`` (2 days): renew when less than this is left. Mail lives 7 days at most, so with a
      30-minute timer (the default schedule) a subscription gets ~96 chances before it lapses.
    - ``expiration_margin`` (10 min): asked-for lifetime = the resource's maximum minus this, so clock
      skew between us and Graph never makes Graph refuse the date as too far ahead.
    - ``alert_before`` (24 h): a failed renewal with less than this left logs ERROR instead of WARNING.
    - ``lease`` (2 min): how long one worker may own a subscription's or a resource's work.
    - ``concurrency`` (8): renewals in flight at once (all share the subscriptions breaker).
    - ``notification_path`` / ``lifecycle_path``: appended to the webhook base URL.
    """

    renew_before: timedelta = timedelta(days=2)
    expiration_margin: timedelta = timedelta(minutes=10)
    alert_before: timedelta = timedelta(hours=24)
    lease: timedelta = timedelta(minutes=2)
    concurrency: int = 8
    notification_path: str = "/notifications"
    lifecycle_path: str = "/notifications/lifecycle"


@dataclass(frozen=True)
class SubscriptionView:
    """What management endpoints show of a subscription: everything but its ``clientState``."""

    id: str
    resource: str
    change_types: tuple[str, ...]
    origin: Origin
    status: SubscriptionStatus
    expiration: datetime
    created_at: datetime
    renewed_at: datetime | None
    last_error: str | None
    notification_url: str
    lifecycle_url: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times in ISO 8601)."""
        return {
            "id": self.id,
            "resource": self.resource,
            "changeTypes": list(self.change_types),
            "origin": self.origin,
            "status": self.status,
            "expiration": self.expiration.isoformat(),
            "createdAt": self.created_at.isoformat(),
            "renewedAt": self.renewed_at.isoformat() if self.renewed_at else None,
            "lastError": self.last_error,
            "notificationUrl": self.notification_url,
            "lifecycleUrl": self.lifecycle_url,
        }


@dataclass(frozen=True)
class ReconcileResult:
    """Resources per outcome; ``busy`` ones were being handled by another worker."""

    created: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenewResult:
    """Counts of one renewal run, plus the catch-ups it ran for recreated or pending resources."""

    renewed: int = 0
    recreated: int = 0
    failed: int = 0
    skipped: int = 0  # not due yet, or handled by another worker
    catchups: tuple[CatchupResult, ...] = ()


class SubscriptionService:
    """Reconcile, renew, react to lifecycle events, and manage subscriptions by hand."""

    def __init__(
        self,
        graph: GraphSubscriptions,
        registry: SubscriptionRegistry,
        origins: OriginStore,
        leases: LeaseStore,
        catchup: DeltaCatchup,
        *,
        desired: Sequence[DesiredSubscription],
        webhook_base: str,
        config: SubscriptionConfig | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._graph = graph
        self._registry = registry
        self._origins = origins
        self._leases = leases
        self._catchup = catchup
        self._desired = {d.spec.resource: d for d in desired}
        self.config = config or SubscriptionConfig()
        base = webhook_base.rstrip("/")
        self._notification_url = base + self.config.notification_path
        self._lifecycle_url = base + self.config.lifecycle_path
        self._clock = clock

    # --- desired state -----------------------------------------------------------------------------

    async def reconcile(self) -> ReconcileResult:
        """Create missing desired subscriptions, replace changed ones, remove unwanted desired-state ones."""
        bound = {row.resource for row in await self._origins.all() if row.origin == "desired"}
        resources = sorted(bound | set(self._desired))
        outcomes = await self._bounded(self._reconcile_one(resource) for resource in resources)
        grouped: dict[ReconcileOutcome, list[str]] = {}
        for resource, outcome in zip(resources, outcomes, strict=True):
            grouped.setdefault(outcome, []).append(resource)
        result = ReconcileResult(**{outcome: tuple(items) for outcome, items in grouped.items()})
        log.info("reconciled subscriptions: %s", result)
        return result

    async def _reconcile_one(self, resource: str) -> ReconcileOutcome:
        try:
            async with self._leases.hold(f"resource:{resource}", self.config.lease) as held:
                if not held:
                    return "busy"
                return await self._converge(resource, self._desired.get(resource))
        except AppError as error:
            log.warning("reconcile of %s failed: %s", resource, _describe(error))
            return "failed"

    async def _converge(self, resource: str, desired: DesiredSubscription | None) -> ReconcileOutcome:
        """Under the resource's lease: keep one matching desired-state subscription, nothing else."""
        records: list[SubscriptionRecord] = []
        for row in await self._origins.desired_for(resource):
            record = await self._registry.get(row.subscription_id)
            if record is None:  # an interrupted create or removal left the origin row behind
                await self._origins.delete(row.subscription_id)
            else:
                records.append(record)
        matching = [r for r in records if desired is not None and self._matches(r, desired)]
        keeper = max(matching, key=lambda r: r.expiration, default=None)
        created = False
        if desired is not None and keeper is None:
            keeper = await self._create(desired.spec, desired.change_types, "desired")
            created = True
        for record in records:
            if record is not keeper:
                await self._remove(record)
        if desired is None:
            return "removed" if records else "unchanged"
        return "created" if created else "unchanged"

    def _matches(self, record: SubscriptionRecord, desired: DesiredSubscription) -> bool:
        return (
            record.change_types == desired.change_types
            and record.notification_url == self._notification_url
            and record.lifecycle_url == self._lifecycle_url
            and record.status not in _GONE
        )

    # --- renewal -----------------------------------------------------------------------------------

    async def renew_due(self, now: datetime | None = None) -> RenewResult:
        """Renew what is due or lost, recreate what Graph no longer has, then run pending catch-ups.

        A timer that fired late (``past_due``) needs nothing special: whatever is due now is renewed now.
        """
        now = now or self._clock()
        records = await self._registry.list_all()
        lost = await self._lost(records)
        due = [r for r in records if r.id in lost or self._is_due(r, now)]
        outcomes = await self._bounded(self._renew_guarded(r.id, force=r.id in lost) for r in due)
        catchups = await self._catchup.run_pending()
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
            live = await self._graph.list_ids()
        except UpstreamError as error:
            log.warning("could not list Graph subscriptions; only due ones are checked: %s", _describe(error))
            return set()
        return {r.id for r in records if r.id not in live}

    def _is_due(self, record: SubscriptionRecord, now: datetime) -> bool:
        return record.status in _NEEDS_WORK or record.expiration - now < self.config.renew_before

    async def _renew_guarded(self, subscription_id: str, *, force: bool) -> RenewOutcome:
        """One subscription's renewal; a storage failure fails it alone, not the whole run."""
        try:
            return await self._renew_one(subscription_id, force=force)
        except AppError as error:
            log.warning("renewal of subscription %s failed: %s", subscription_id, _describe(error))
            return "failed"

    async def _renew_one(self, subscription_id: str, *, force: bool = False) -> RenewOutcome:
        async with self._leases.hold(f"subscription:{subscription_id}", self.config.lease) as held:
            if not held:
                return "skipped"
            record = await self._registry.get(subscription_id)  # read again: another run may have renewed it
            now = self._clock()
            if record is None or not (force or self._is_due(record, now)):
                return "skipped"
            if record.status in _GONE:
                return await self._recreate_or_record(record)
            try:
                await self._renew(record)
            except NotFoundError:
                log.warning("subscription %s (%s) is gone from Graph: recreating it", record.id, record.resource)
                return await self._recreate_or_record(replace(record, status="removed"))
            except UpstreamError as error:
                await self._record_failure(record, error, "failed")
                return "failed"
            return "renewed"

    async def _renew(self, record: SubscriptionRecord) -> SubscriptionRecord:
        now = self._clock()
        wanted = now + parse_resource(record.resource).max_lifetime - self.config.expiration_margin
        body = await self._graph.renew(record.id, wanted)
        renewed = replace(record, expiration=expiration_of(body), renewed_at=now, status="active", last_error=None)
        await self._registry.upsert(renewed)
        return renewed

    async def _recreate_or_record(self, record: SubscriptionRecord) -> RenewOutcome:
        """Recreate a lost subscription; if that fails, remember it is lost so the next tick tries again."""
        try:
            await self._recreate(record)
        except AppError as error:
            await self._record_failure(record, error, "removed")
            return "failed"
        return "recreated"

    async def _recreate(self, record: SubscriptionRecord) -> None:
        """Replace a subscription Graph no longer has, then publish what changed while it was gone."""
        spec = parse_resource(record.resource)
        origin = await self._origins.get(record.id)
        if origin is not None and origin.origin == "desired":
            async with self._leases.hold(f"resource:{spec.resource}", self.config.lease) as held:
                if not held:
                    raise TransientError("the resource is being reconciled right now", service="subscriptions")
                if await self._origins.get(record.id) is None:  # reconcile replaced or removed it meanwhile
                    await self._registry.delete(record.id)
                    return
                await self._swap(record, spec, "desired")
        else:
            await self._swap(record, spec, "adhoc")
        try:
            await self._catchup.catch_up(spec)
        except Exception:  # Graph, storage or the injected publish: still pending, the next run retries it
            log.warning("catch-up of %s after recreating failed", spec.resource, exc_info=True)

    async def _swap(self, record: SubscriptionRecord, spec: ResourceSpec, origin: Origin) -> None:
        await self._catchup.request(spec)  # the gap began already; a crash from here on still catches up
        new = await self._create(spec, record.change_types, origin)
        await self._registry.delete(record.id)
        await self._origins.delete(record.id)
        log.info("recreated subscription %s as %s (%s)", record.id, new.id, spec.resource)

    async def _record_failure(self, record: SubscriptionRecord, error: AppError, status: SubscriptionStatus) -> None:
        left = record.expiration - self._clock()
        level = logging.ERROR if left < self.config.alert_before else logging.WARNING
        problem = _describe(error)
        log.log(level, "subscription %s (%s) needs attention, %s left: %s", record.id, record.resource, left, problem)
        await self._registry.upsert(replace(record, status=status, last_error=problem))

    # --- lifecycle reactions (shared.events.lifecycle.LifecycleReactions) --------------------------

    async def reauthorization_required(self, notification: LifecycleNotification) -> None:
        """Reauthorize; if Graph refuses, a renewal (which also reauthorizes) is the fallback."""
        async with self._owned(notification) as record:
            if record is None:
                return
            try:
                await self._graph.reauthorize(record.id)
            except NotFoundError:
                await self._recreate(record)
                return
            except UpstreamError as error:
                log.warning("reauthorizing %s failed (%s); renewing instead", record.id, _describe(error))
                try:
                    await self._renew(record)
                except UpstreamError as renew_error:
                    await self._record_failure(record, renew_error, "reauthorization_required")
                    raise
                return
            await self._registry.upsert(replace(record, status="active", last_error=None))

    async def subscription_removed(self, notification: LifecycleNotification) -> None:
        """Graph dropped the subscription: recreate it, then catch up on what it missed."""
        async with self._owned(notification) as record:
            if record is not None:
                await self._recreate(replace(record, status="removed"))

    async def missed(self, notification: LifecycleNotification) -> None:
        """Graph could not deliver some notifications: catch up the resource with delta."""
        record = await self._registry.get(notification.subscription_id)
        if record is None:
            log.warning("'missed' for unknown subscription %s ignored", notification.subscription_id)
            return
        await self._catchup.catch_up(parse_resource(record.resource))

    @contextlib.asynccontextmanager
    async def _owned(self, notification: LifecycleNotification) -> AsyncIterator[SubscriptionRecord | None]:
        """The subscription's record under its lease (None: not ours). A busy lease raises
        ``TransientError``, so the lifecycle message is retried after the other worker is done."""
        subscription_id = notification.subscription_id
        async with self._leases.hold(f"subscription:{subscription_id}", self.config.lease) as held:
            if not held:
                raise TransientError("the subscription is being handled by another worker", service="subscriptions")
            record = await self._registry.get(subscription_id)
            if record is None:
                log.warning("%s for unknown subscription %s ignored", notification.lifecycle_event, subscription_id)
            yield record

    # --- management --------------------------------------------------------------------------------

    async def create(self, resource: str, change_types: str | Iterable[str]) -> SubscriptionView:
        """An ad hoc subscription (kept by reconcile, renewed like the others); bad input → 400."""
        try:
            spec = parse_resource(resource)
            types = change_types if isinstance(change_types, str) else ",".join(change_types)
            parsed = parse_change_types(types)
        except ValueError as error:
            raise InvalidInputError(str(error)) from error
        record = await self._create(spec, parsed, "adhoc")
        return self._view(record, "adhoc")

    async def delete(self, subscription_id: str) -> bool:
        """Delete one subscription (False if unknown). A desired one comes back on the next reconcile."""
        async with self._leases.hold(f"subscription:{subscription_id}", self.config.lease) as held:
            if not held:
                raise TransientError("the subscription is being renewed right now", service="subscriptions")
            record = await self._registry.get(subscription_id)
            if record is None:
                return False
            await self._remove(record)
            return True

    async def renew_now(self, subscription_id: str) -> SubscriptionView | None:
        """Renew (or recreate) one subscription now, due or not; None if unknown. Failures show in the view."""
        if await self._registry.get(subscription_id) is None:
            return None
        await self._renew_one(subscription_id, force=True)
        return await self.get_subscription(subscription_id)

    async def list_subscriptions(self) -> list[SubscriptionView]:
        """Every subscription in the registry (ad hoc and desired), without secrets."""
        origins = {row.subscription_id: row.origin for row in await self._origins.all()}
        records = await self._registry.list_all()
        return sorted((self._view(r, origins.get(r.id, "adhoc")) for r in records), key=lambda v: v.resource)

    async def get_subscription(self, subscription_id: str) -> SubscriptionView | None:
        record = await self._registry.get(subscription_id)
        if record is None:
            return None
        origin = await self._origins.get(subscription_id)
        return self._view(record, origin.origin if origin else "adhoc")

    # --- shared steps ------------------------------------------------------------------------------

    async def _create(self, spec: ResourceSpec, change_types: tuple[str, ...], origin: Origin) -> SubscriptionRecord:
        """POST the subscription (fresh clientState) and record it, with a delta baseline taken *before* the
        POST and a catch-up after the record exists: a change notified between Graph's creation and our
        record (dropped by the webhook as unknown) still arrives, through delta (deduplicated against live
        notifications)."""
        try:
            await self._catchup.baseline(spec)
        except AppError as error:  # the resource stays pending; the next renewal run takes the baseline
            log.warning("delta baseline of %s failed: %s", spec.resource, _describe(error))
        now = self._clock()
        client_state = secrets.token_urlsafe(32)
        body = await self._graph.create(
            NewSubscription(
                resource=spec.resource,
                change_types=change_types,
                notification_url=self._notification_url,
                lifecycle_url=self._lifecycle_url,
                expiration=now + spec.max_lifetime - self.config.expiration_margin,
                client_state=client_state,
            )
        )
        subscription_id = body.get("id")
        if not isinstance(subscription_id, str) or not subscription_id:
            raise UnavailableError("Graph answered a subscription without an id")
        await self._origins.put(OriginRow(subscription_id, origin, spec.resource))
        record = SubscriptionRecord(
            id=subscription_id,
            resource=spec.resource,
            change_types=change_types,
            notification_url=self._notification_url,
            client_state=Secret(client_state),
            expiration=expiration_of(body),
            created_at=now,
            lifecycle_url=self._lifecycle_url,
        )
        await self._registry.upsert(record)
        log.info("created subscription %s for %s (%s)", subscription_id, spec.resource, origin)
        try:
            await self._catchup.catch_up(spec)
        except AppError as error:  # the request stays pending; the next renewal run retries it
            log.warning("delta catch-up of %s after creation failed: %s", spec.resource, _describe(error))
        return record

    async def _remove(self, record: SubscriptionRecord) -> None:
        """Delete on Graph (already gone is fine), then our rows; the delta link goes with the last one."""
        with contextlib.suppress(NotFoundError):
            await self._graph.delete(record.id)
        await self._registry.delete(record.id)
        await self._origins.delete(record.id)
        if not any(r.resource == record.resource for r in await self._registry.list_all()):
            await self._catchup.forget(parse_resource(record.resource))
        log.info("removed subscription %s (%s)", record.id, record.resource)

    async def _bounded(self, jobs: Iterable[Awaitable[T]]) -> list[T]:
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(job: Awaitable[T]) -> T:
            async with gate:
                return await job

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    def _view(self, record: SubscriptionRecord, origin: Origin) -> SubscriptionView:
        return SubscriptionView(
            id=record.id,
            resource=record.resource,
            change_types=record.change_types,
            origin=origin,
            status=record.status,
            expiration=record.expiration,
            created_at=record.created_at,
            renewed_at=record.renewed_at,
            last_error=record.last_error,
            notification_url=record.notification_url,
            lifecycle_url=record.lifecycle_url,
        )


def _describe(error: AppError) -> str:
    """Bounded, secret-free text for logs and ``last_error`` (Graph's messages carry no secrets)."""
    return f"{type(error).__name__}: {error.message}"[:300]
