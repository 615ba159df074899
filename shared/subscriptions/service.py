"""``SubscriptionService``: the one object the app holds for its subscriptions.

It builds the parts, each with one job, on shared steps and stores, and offers their operations together:

- ``reconcile.SubscriptionReconciler``: make the desired subscriptions exist, mailbox fleets expanded
  (``fleet.py``) (``reconcile()``);
- ``renewal.SubscriptionRenewal``: the timer's ``renew_due()``;
- ``reactions.SubscriptionReactions``: the lifecycle reactions (the lifecycle processor takes this service
  as its ``LifecycleReactions``);
- ``management.SubscriptionManagement``: list, show, create, delete and renew by hand (API and ops tool);
- ``steps.SubscriptionSteps``: how a subscription is created, renewed, recreated and removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from shared.events.notifications import LifecycleNotification
from shared.graph.subscriptions import GraphSubscriptions, ResourceData
from shared.subscriptions.catchup import DeltaCatchup
from shared.subscriptions.clock import Clock, utcnow
from shared.subscriptions.delivery import EventHubTarget
from shared.subscriptions.desired import DesiredSubscription
from shared.subscriptions.fleet import FleetDirectory, FleetStore
from shared.subscriptions.leases import LeaseStore
from shared.subscriptions.management import SubscriptionManagement, SubscriptionView
from shared.subscriptions.origins import OriginStore
from shared.subscriptions.reactions import SubscriptionReactions
from shared.subscriptions.reconcile import ReconcileResult, SubscriptionReconciler
from shared.subscriptions.records import SubscriptionRegistry
from shared.subscriptions.renewal import RenewResult, SubscriptionRenewal
from shared.subscriptions.steps import SubscriptionConfig, SubscriptionSteps

__all__ = ["SubscriptionConfig", "SubscriptionService"]


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
        eventhub: EventHubTarget | None = None,
        resource_data: ResourceData | None = None,
        directory: FleetDirectory | None = None,
        fleet_store: FleetStore | None = None,
    ) -> None:
        self.config = config or SubscriptionConfig()
        self._steps = SubscriptionSteps(
            graph,
            registry,
            origins,
            leases,
            catchup,
            self.config,
            clock,
            webhook_base=webhook_base,
            eventhub=eventhub,
            resource_data=resource_data,
        )
        self._reconciler = SubscriptionReconciler(self._steps, desired, directory=directory, fleet_store=fleet_store)
        self._renewal = SubscriptionRenewal(self._steps)
        self._reactions = SubscriptionReactions(self._steps)
        self._management = SubscriptionManagement(self._steps, self._renewal)

    async def reconcile(self) -> ReconcileResult:
        return await self._reconciler.reconcile()

    async def fleet_members(self, fleet: str) -> list[dict[str, object]]:
        return await self._reconciler.members(fleet)

    async def reconcile_member(self, resource: str) -> str:
        return await self._reconciler.reconcile_member(resource)

    async def renew_due(self, now: datetime | None = None) -> RenewResult:
        return await self._renewal.renew_due(now)

    async def reauthorization_required(self, notification: LifecycleNotification) -> None:
        await self._reactions.reauthorization_required(notification)

    async def subscription_removed(self, notification: LifecycleNotification) -> None:
        await self._reactions.subscription_removed(notification)

    async def missed(self, notification: LifecycleNotification) -> None:
        await self._reactions.missed(notification)

    async def create(self, resource: str, change_types: str | Iterable[str]) -> SubscriptionView:
        return await self._management.create(resource, change_types)

    async def delete(self, subscription_id: str) -> bool:
        return await self._management.delete(subscription_id)

    async def renew_now(self, subscription_id: str) -> SubscriptionView | None:
        return await self._management.renew_now(subscription_id)

    async def list_subscriptions(self) -> list[SubscriptionView]:
        return await self._management.list_subscriptions()

    async def get_subscription(self, subscription_id: str) -> SubscriptionView | None:
        return await self._management.get_subscription(subscription_id)
