"""Management by hand (the HTTP API and the ops tool): list, show, create ad hoc, delete, renew now.

What is shown is a ``SubscriptionView``: a subscription without its ``clientState``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from shared.errors import InvalidInputError, TransientError
from shared.subscriptions.desired import parse_change_types, parse_resource
from shared.subscriptions.origins import Origin
from shared.subscriptions.records import SubscriptionRecord, SubscriptionStatus
from shared.subscriptions.renewal import SubscriptionRenewal
from shared.subscriptions.steps import SubscriptionSteps


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
    with_data: bool = False  # rich notifications (``+data``)
    certificate_id: str | None = None  # the certificate Graph encrypts for: rotation is done when none shows the old id

    @classmethod
    def of(cls, record: SubscriptionRecord, origin: Origin) -> SubscriptionView:
        """The view of a record: its fields of the same names (the secret has none here), plus the origin."""
        shown = {f.name: getattr(record, f.name) for f in fields(cls) if f.name != "origin"}
        return cls(origin=origin, **shown)

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
            "includeResourceData": self.with_data,
            "encryptionCertificateId": self.certificate_id,
        }


class SubscriptionManagement:
    """The hand-driven operations; they take the same leases as the timer and the reactions."""

    def __init__(self, steps: SubscriptionSteps, renewal: SubscriptionRenewal) -> None:
        self._steps = steps
        self._renewal = renewal

    async def create(self, resource: str, change_types: str | Iterable[str]) -> SubscriptionView:
        """An ad hoc subscription (kept by reconcile, renewed like the others); bad input → 400."""
        try:
            spec = parse_resource(resource)
            types = change_types if isinstance(change_types, str) else ",".join(change_types)
            parsed = parse_change_types(types)
        except ValueError as error:
            raise InvalidInputError(str(error)) from error
        record = await self._steps.create(spec, parsed, "adhoc")
        return SubscriptionView.of(record, "adhoc")

    async def delete(self, subscription_id: str) -> bool:
        """Delete one subscription (False if unknown). A desired one comes back on the next reconcile."""
        async with self._steps.hold(f"subscription:{subscription_id}") as held:
            if not held:
                raise TransientError("the subscription is being renewed right now", service="subscriptions")
            record = await self._steps.registry.get(subscription_id)
            if record is None:
                return False
            await self._steps.remove(record)
            return True

    async def renew_now(self, subscription_id: str) -> SubscriptionView | None:
        """Renew (or recreate) one subscription now, due or not; None if unknown. Failures show in the view."""
        if await self._steps.registry.get(subscription_id) is None:
            return None
        await self._renewal.renew_one(subscription_id, force=True)
        return await self.get_subscription(subscription_id)

    async def list_subscriptions(self) -> list[SubscriptionView]:
        """Every subscription in the registry (ad hoc and desired), without secrets."""
        origins = {row.subscription_id: row.origin for row in await self._steps.origins.all()}
        records = await self._steps.registry.list_all()
        views = (SubscriptionView.of(r, origins.get(r.id, "adhoc")) for r in records)
        return sorted(views, key=lambda v: v.resource)

    async def get_subscription(self, subscription_id: str) -> SubscriptionView | None:
        record = await self._steps.registry.get(subscription_id)
        if record is None:
            return None
        origin = await self._steps.origins.get(subscription_id)
        return SubscriptionView.of(record, origin.origin if origin else "adhoc")
