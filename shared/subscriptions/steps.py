"""The steps every subscription job is made of: create, remove, renew, recreate, record a failure.

Reconcile, renewal, the lifecycle reactions and management differ in *when* they act; *how* a subscription
is created, renewed, replaced or removed lives here once. Every write order is chosen so a crash leaves
something the next run heals: the origin row is written before the registry record, a replacement is
created before the old one is removed, and a resource is marked for catch-up before its subscription is
recreated.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from dataclasses import InitVar, dataclass, field, replace
from datetime import datetime, timedelta

from shared.errors import (
    AppError,
    ConfigurationError,
    NotFoundError,
    StorageUnavailableError,
    TransientError,
    UnavailableError,
)
from shared.graph.subscriptions import GraphSubscriptions, NewSubscription, ResourceData, expiration_of
from shared.secret import Secret
from shared.subscriptions.catchup import DeltaCatchup
from shared.subscriptions.clock import Clock
from shared.subscriptions.delivery import EventHubTarget, delivery_of
from shared.subscriptions.desired import Delivery, ResourceSpec, parse_resource
from shared.subscriptions.leases import LeaseStore
from shared.subscriptions.origins import Origin, OriginRow, OriginStore
from shared.subscriptions.records import SubscriptionRecord, SubscriptionRegistry, SubscriptionStatus
from shared.telemetry import get_logger

log = get_logger("subscriptions")

# Statuses that make a subscription due whatever its expiration says.
NEEDS_WORK: frozenset[SubscriptionStatus] = frozenset({"reauthorization_required", "failed", "removed", "expired"})
GONE: frozenset[SubscriptionStatus] = frozenset({"removed", "expired"})


@dataclass(frozen=True)
class SubscriptionConfig:
    """Tunables (the lead maps them to settings).

    - ``renew_before`` (2 days): renew when less than this is left (mail with resource data, which lives a
      day: at most half of that). Mail lives 7 days at most, so with a 30-minute timer (the default
      schedule) a subscription gets ~96 chances before it lapses, one with data ~24.
    - ``expiration_margin`` (10 min): asked-for lifetime = the resource's maximum minus this, so clock
      skew between us and Graph never makes Graph refuse the date as too far ahead.
    - ``alert_before`` (24 h): a failed renewal with less than this left logs ERROR instead of WARNING.
    - ``lease`` (2 min): how long one worker may own a subscription's or a resource's work.
    - ``concurrency`` (8): renewals in flight at once (all share the subscriptions breaker).
    - ``reconcile_budget`` (4 min): a reconcile starts no new resource's work after this long; the rest is
      ``deferred`` to the next run (a fleet's cold start on a timer with a 5-10 minute function timeout
      never gets killed in the middle of a creation, which could leave an orphan on Graph).
    - ``notification_path`` / ``lifecycle_path``: appended to the webhook base URL.
    """

    renew_before: timedelta = timedelta(days=2)
    expiration_margin: timedelta = timedelta(minutes=10)
    alert_before: timedelta = timedelta(hours=24)
    lease: timedelta = timedelta(minutes=2)
    concurrency: int = 8
    reconcile_budget: timedelta = timedelta(minutes=4)
    notification_path: str = "/notifications"
    lifecycle_path: str = "/notifications/lifecycle"


@dataclass
class SubscriptionSteps:
    """The stores, Graph and the catch-up every job uses, and the steps built on them."""

    graph: GraphSubscriptions
    registry: SubscriptionRegistry
    origins: OriginStore
    leases: LeaseStore
    catchup: DeltaCatchup
    config: SubscriptionConfig
    clock: Clock
    webhook_base: InitVar[str]
    notification_url: str = field(init=False)
    lifecycle_url: str = field(init=False)
    eventhub: EventHubTarget | None = None  # where ``@eventhub`` entries deliver (None: not configured)
    resource_data: ResourceData | None = None  # what ``+data`` entries ask for (None: rich notifications off)

    def __post_init__(self, webhook_base: str) -> None:
        base = webhook_base.rstrip("/")
        self.notification_url = base + self.config.notification_path
        self.lifecycle_url = base + self.config.lifecycle_path

    def urls(self, delivery: Delivery) -> tuple[str, str]:
        """(notificationUrl, lifecycleNotificationUrl) for a delivery path; the hub takes both kinds."""
        if delivery == "webhook":
            return self.notification_url, self.lifecycle_url
        if self.eventhub is None:
            raise ConfigurationError("an @eventhub subscription needs GRAPH_EVENTHUB__fullyQualifiedNamespace")
        return self.eventhub.url, self.eventhub.url

    def hold(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """The lease ``name`` for one job (``subscription:<id>`` or ``resource:<resource>``)."""
        return self.leases.hold(name, self.config.lease)

    def is_due(self, record: SubscriptionRecord, now: datetime) -> bool:
        """Failed or gone, or within its renewal window: ``renew_before``; for a subscription with resource data
        (a day-long lifetime, shorter than the default window) at most half its lifetime, so it is renewed
        about twice a day instead of on every run. Each resource's window is shortened by a fixed share of up
        to half (``renewal_spread``), so a fleet created in one run is not renewed in one run: its renewals
        spread over half the window, and every one still has at least half the window left."""
        window = self.config.renew_before
        if record.with_data:
            window = min(window, parse_resource(record.resource).max_lifetime(with_data=True) / 2)
        window *= 1 - renewal_spread(record.resource) / 2
        return record.status in NEEDS_WORK or record.expiration - now < window

    async def create(
        self,
        spec: ResourceSpec,
        change_types: tuple[str, ...],
        origin: Origin,
        delivery: Delivery = "webhook",
        with_data: bool = False,
    ) -> SubscriptionRecord:
        """POST the subscription (fresh clientState) and record it, with a delta baseline taken *before* the
        POST and a catch-up after the record exists: a change notified between Graph's creation and our
        record (dropped by the webhook as unknown) still arrives, through delta (deduplicated against live
        notifications)."""
        try:
            await self.catchup.baseline(spec)
        except AppError as error:  # the resource stays pending; the next renewal run takes the baseline
            log.warning("delta baseline of %s failed: %s", spec.resource, describe(error))
        record = await self._post(spec, change_types, delivery, with_data)
        try:
            await self.origins.put(OriginRow(record.id, origin, spec.resource))
            await self.registry.upsert(record)
        except StorageUnavailableError as error:
            # Storage refused the record after Graph accepted: take the subscription back rather than leave an
            # orphan Graph keeps alive (and counts against the mailbox) for days; the next reconcile creates it
            # again. Not when the write may have happened (no answer): the record would then name a deleted
            # subscription, which the renewal run's check against Graph's list recreates.
            if not error.ambiguous:
                with contextlib.suppress(AppError):
                    await self.graph.delete(record.id)
            raise
        log.info("created subscription %s for %s (%s)", record.id, spec.resource, origin)
        try:
            await self.catchup.catch_up(spec)
        except AppError as error:  # the request stays pending; the next renewal run retries it
            log.warning("delta catch-up of %s after creation failed: %s", spec.resource, describe(error))
        return record

    async def _post(
        self, spec: ResourceSpec, change_types: tuple[str, ...], delivery: Delivery, with_data: bool
    ) -> SubscriptionRecord:
        """Create the subscription on Graph; the record to store for it (not stored yet)."""
        notification_url, lifecycle_url = self.urls(delivery)
        resource_data = self.resource_data if with_data else None
        if with_data and resource_data is None:
            raise ConfigurationError(f"{spec.resource}: +data needs RICH_NOTIFICATIONS and its certificate")
        now = self.clock()
        client_state = secrets.token_urlsafe(32)
        body = await self.graph.create(
            NewSubscription(
                resource=spec.resource,
                change_types=change_types,
                notification_url=notification_url,
                lifecycle_url=lifecycle_url,
                expiration=now + spec.max_lifetime(with_data) - self.config.expiration_margin,
                client_state=client_state,
                resource_data=resource_data,
            )
        )
        subscription_id = body.get("id")
        if not isinstance(subscription_id, str) or not subscription_id:
            raise UnavailableError("Graph answered a subscription without an id")
        return SubscriptionRecord(
            id=subscription_id,
            resource=spec.resource,
            change_types=change_types,
            notification_url=notification_url,
            client_state=Secret(client_state),
            expiration=expiration_of(body),
            created_at=now,
            lifecycle_url=lifecycle_url,
            with_data=with_data,
            certificate_id=resource_data.certificate.certificate_id if resource_data else None,
        )

    async def remove(self, record: SubscriptionRecord) -> None:
        """Delete on Graph (already gone is fine), then our rows; the delta link goes with the last one."""
        with contextlib.suppress(NotFoundError):
            await self.graph.delete(record.id)
        await self.registry.delete(record.id)
        await self.origins.delete(record.id)
        if not any(r.resource == record.resource for r in await self.registry.list_all()):
            await self.catchup.forget(parse_resource(record.resource))
        log.info("removed subscription %s (%s)", record.id, record.resource)

    async def renew(self, record: SubscriptionRecord) -> SubscriptionRecord:
        """Extend the subscription to its resource's maximum lifetime and record it as active; a rich one also
        gets the current certificate, so after a rotation Graph encrypts with the new one from here on."""
        now = self.clock()
        lifetime = parse_resource(record.resource).max_lifetime(record.with_data)
        wanted = now + lifetime - self.config.expiration_margin
        certificate = self.resource_data.certificate if record.with_data and self.resource_data else None
        body = await self.graph.renew(record.id, wanted, certificate)
        renewed = replace(record, expiration=expiration_of(body), renewed_at=now, status="active", last_error=None)
        if certificate is not None:
            renewed = replace(renewed, certificate_id=certificate.certificate_id)
        await self.registry.upsert(renewed)
        return renewed

    async def recreate(self, record: SubscriptionRecord) -> None:
        """Replace a subscription Graph no longer has, then publish what changed while it was gone."""
        spec = parse_resource(record.resource)
        origin = await self.origins.get(record.id)
        if origin is not None and origin.origin == "desired":
            async with self.hold(f"resource:{spec.resource}") as held:
                if not held:
                    raise TransientError("the resource is being reconciled right now", service="subscriptions")
                if await self.origins.get(record.id) is None:  # reconcile replaced or removed it meanwhile
                    await self.registry.delete(record.id)
                    return
                await self._swap(record, spec, "desired")
        else:
            await self._swap(record, spec, "adhoc")
        try:
            await self.catchup.catch_up(spec)
        except Exception:  # Graph, storage or the injected publish: still pending, the next run retries it
            log.warning("catch-up of %s after recreating failed", spec.resource, exc_info=True)

    async def _swap(self, record: SubscriptionRecord, spec: ResourceSpec, origin: Origin) -> None:
        await self.catchup.request(spec)  # the gap began already; a crash from here on still catches up
        new = await self.create(
            spec, record.change_types, origin, delivery_of(record.notification_url), with_data=record.with_data
        )
        await self.registry.delete(record.id)
        await self.origins.delete(record.id)
        log.info("recreated subscription %s as %s (%s)", record.id, new.id, spec.resource)

    async def record_failure(self, record: SubscriptionRecord, error: AppError, status: SubscriptionStatus) -> None:
        """Log (ERROR when expiry is near) and keep the failure on the record, so the next run retries it."""
        left = record.expiration - self.clock()
        level = logging.ERROR if left < self.config.alert_before else logging.WARNING
        problem = describe(error)
        log.log(level, "subscription %s (%s) needs attention, %s left: %s", record.id, record.resource, left, problem)
        await self.registry.upsert(replace(record, status=status, last_error=problem))


def renewal_spread(resource: str) -> float:
    """A resource's fixed place in [0, 1): the same on every instance and run, uniform over resources."""
    return int.from_bytes(hashlib.sha256(resource.encode()).digest()[:8], "big") / 2**64


def describe(error: AppError) -> str:
    """Bounded, secret-free text for logs and ``last_error`` (Graph's messages carry no secrets)."""
    return f"{type(error).__name__}: {error.message}"[:300]
