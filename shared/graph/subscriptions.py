"""Graph's subscription calls: create, get, renew, reauthorize, delete (dicts in and out).

Every call goes through ``GraphGateway.call`` under the ``SUBSCRIPTIONS`` breaker, so a subscription outage
never blocks directory or mail reads. Request bodies use the SDK's ``Subscription`` model (these calls
are rare, the model import is cheap next to a POST's handshake); responses stay native JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from msgraph.generated.models.subscription import Subscription

from shared.errors import UnavailableError
from shared.graph.gateway import SUBSCRIPTIONS, GraphGateway, native_request

MAX_PAGES = 100  # thousands of subscriptions; a list that never ends is Graph's bug, not a reason to loop


@dataclass(frozen=True)
class EncryptionCertificate:
    """What Graph encrypts resource data with: our certificate (public part, base64 DER) and our id for it."""

    certificate: str = field(repr=False)
    certificate_id: str


@dataclass(frozen=True)
class ResourceData:
    """A rich subscription's extras: the message fields Graph includes (``$select``) and the certificate."""

    select: tuple[str, ...]
    certificate: EncryptionCertificate


@dataclass(frozen=True)
class NewSubscription:
    """What ``POST /subscriptions`` needs. ``client_state`` is revealed here only, for the request body."""

    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str
    expiration: datetime
    client_state: str
    resource_data: ResourceData | None = None  # None: a basic subscription

    @property
    def requested_resource(self) -> str:
        """The resource as sent: with resource data, Outlook needs the fields in the path (``$select``)."""
        if self.resource_data is None:
            return self.resource
        return f"{self.resource}?$select={','.join(self.resource_data.select)}"


def expiration_of(body: dict[str, Any]) -> datetime:
    """``expirationDateTime`` of a subscription Graph returned (7 fractional digits are fine)."""
    raw = body.get("expirationDateTime")
    try:
        parsed = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise UnavailableError("Graph answered a subscription without a valid expirationDateTime")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class GraphSubscriptions:
    """The five subscription calls; Graph's errors arrive as the app's errors (404 → ``NotFoundError``)."""

    def __init__(self, gateway: GraphGateway) -> None:
        self._gateway = gateway

    async def create(self, new: NewSubscription) -> dict[str, Any]:
        """``POST /subscriptions``: Graph runs the validation handshake on both URLs before answering."""
        body = Subscription(
            resource=new.requested_resource,
            change_type=",".join(new.change_types),
            notification_url=new.notification_url,
            lifecycle_notification_url=new.lifecycle_url,
            expiration_date_time=new.expiration,
            client_state=new.client_state,
        )
        if new.resource_data is not None:
            body.include_resource_data = True
            body.encryption_certificate = new.resource_data.certificate.certificate
            body.encryption_certificate_id = new.resource_data.certificate.certificate_id
        builder = self._gateway.client.subscriptions
        return await self._gateway.call(
            SUBSCRIPTIONS, lambda: builder.post(body, request_configuration=native_request())
        )

    async def list_ids(self) -> set[str]:
        """Ids of every subscription Graph keeps for this app (``GET /subscriptions``, all pages)."""
        builder = self._gateway.client.subscriptions
        ids: set[str] = set()
        for _ in range(MAX_PAGES):
            body = await self._gateway.call(SUBSCRIPTIONS, partial(builder.get, request_configuration=native_request()))
            items = body.get("value")
            if not isinstance(items, list):
                raise UnavailableError("Graph answered the subscription list without a value array")
            ids.update(i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str))
            next_link = body.get("@odata.nextLink")
            if not isinstance(next_link, str):
                return ids
            builder = self._gateway.client.subscriptions.with_url(next_link)
        raise UnavailableError(f"the subscription list did not end within {MAX_PAGES} pages")

    async def get(self, subscription_id: str) -> dict[str, Any]:
        """``GET /subscriptions/{id}``."""
        builder = self._gateway.client.subscriptions.by_subscription_id(subscription_id)
        return await self._gateway.call(SUBSCRIPTIONS, lambda: builder.get(request_configuration=native_request()))

    async def renew(
        self, subscription_id: str, expiration: datetime, certificate: EncryptionCertificate | None = None
    ) -> dict[str, Any]:
        """``PATCH /subscriptions/{id}`` with a new ``expirationDateTime``; with ``certificate``, a rich
        subscription also gets the current encryption certificate (rotation happens at renewal)."""
        body = Subscription(expiration_date_time=expiration)
        if certificate is not None:
            body.encryption_certificate = certificate.certificate
            body.encryption_certificate_id = certificate.certificate_id
        builder = self._gateway.client.subscriptions.by_subscription_id(subscription_id)
        return await self._gateway.call(
            SUBSCRIPTIONS, lambda: builder.patch(body, request_configuration=native_request())
        )

    async def reauthorize(self, subscription_id: str) -> None:
        """``POST /subscriptions/{id}/reauthorize``: the answer to a ``reauthorizationRequired`` event."""
        builder = self._gateway.client.subscriptions.by_subscription_id(subscription_id).reauthorize
        await self._gateway.call(SUBSCRIPTIONS, lambda: builder.post(request_configuration=native_request()))

    async def delete(self, subscription_id: str) -> None:
        """``DELETE /subscriptions/{id}``."""
        builder = self._gateway.client.subscriptions.by_subscription_id(subscription_id)
        await self._gateway.call(SUBSCRIPTIONS, lambda: builder.delete(request_configuration=native_request()))
