"""The lifecycle reactions (``shared.events.lifecycle.LifecycleReactions``) for our subscriptions.

``reauthorizationRequired`` reauthorizes (a renewal, which also reauthorizes, is the fallback);
``subscriptionRemoved`` recreates the subscription and catches its resource up; ``missed`` catches up.
Each works on the subscription under its lease; a busy lease retries the lifecycle message later.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from shared.errors import NotFoundError, TransientError, UpstreamError
from shared.events.notifications import LifecycleNotification
from shared.subscriptions.desired import parse_resource
from shared.subscriptions.records import SubscriptionRecord
from shared.subscriptions.steps import SubscriptionSteps, describe
from shared.telemetry import get_logger

log = get_logger("subscriptions")


class SubscriptionReactions:
    """Reauthorize, recreate and catch up, or catch up, as Graph's lifecycle events ask."""

    def __init__(self, steps: SubscriptionSteps) -> None:
        self._steps = steps

    async def reauthorization_required(self, notification: LifecycleNotification) -> None:
        """Reauthorize; if Graph refuses, a renewal (which also reauthorizes) is the fallback."""
        steps = self._steps
        async with self._owned(notification) as record:
            if record is None:
                return
            try:
                await steps.graph.reauthorize(record.id)
            except NotFoundError:
                await steps.recreate(record)
                return
            except UpstreamError as error:
                log.warning("reauthorizing %s failed (%s); renewing instead", record.id, describe(error))
                try:
                    await steps.renew(record)
                except UpstreamError as renew_error:
                    await steps.record_failure(record, renew_error, "reauthorization_required")
                    raise
                return
            await steps.registry.upsert(replace(record, status="active", last_error=None))

    async def subscription_removed(self, notification: LifecycleNotification) -> None:
        """Graph dropped the subscription: recreate it, then catch up on what it missed."""
        async with self._owned(notification) as record:
            if record is not None:
                await self._steps.recreate(replace(record, status="removed"))

    async def missed(self, notification: LifecycleNotification) -> None:
        """Graph could not deliver some notifications: catch up the resource with delta."""
        record = await self._steps.registry.get(notification.subscription_id)
        if record is None:
            log.warning("'missed' for unknown subscription %s ignored", notification.subscription_id)
            return
        await self._steps.catchup.catch_up(parse_resource(record.resource))

    @contextlib.asynccontextmanager
    async def _owned(self, notification: LifecycleNotification) -> AsyncIterator[SubscriptionRecord | None]:
        """The subscription's record under its lease (None: not ours). A busy lease raises
        ``TransientError``, so the lifecycle message is retried after the other worker is done."""
        subscription_id = notification.subscription_id
        async with self._steps.hold(f"subscription:{subscription_id}") as held:
            if not held:
                raise TransientError("the subscription is being handled by another worker", service="subscriptions")
            record = await self._steps.registry.get(subscription_id)
            if record is None:
                log.warning("%s for unknown subscription %s ignored", notification.lifecycle_event, subscription_id)
            yield record
