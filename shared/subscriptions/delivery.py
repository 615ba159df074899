"""Where Graph delivers a subscription's notifications: our webhook, or an Azure event hub.

Graph's documented form for an event hub that Graph writes to with its own identity (the "Microsoft Graph
Change Tracking" service principal holding the Azure Event Hubs Data Sender role on the hub) is
``EventHub:https://<namespace>.servicebus.windows.net/eventhubname/<hub>?tenantId=<tenant>``, the same for
``notificationUrl`` and ``lifecycleNotificationUrl``. Graph runs no validation handshake against it (it writes
a validation message into the hub instead, which the hub's processor ignores).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from shared.subscriptions.desired import Delivery

EVENTHUB_PREFIX = "EventHub:"


@dataclass(frozen=True)
class EventHubTarget:
    """An event hub by namespace host (``<ns>.servicebus.windows.net``), hub name and tenant (domain or id)."""

    namespace: str
    hub: str
    tenant: str

    @property
    def url(self) -> str:
        """The notification URL Graph expects for this hub."""
        path = quote(self.hub, safe="")
        return f"{EVENTHUB_PREFIX}https://{self.namespace.lower()}/eventhubname/{path}?tenantId={quote(self.tenant)}"


def delivery_of(url: str) -> Delivery:
    """Which path a stored notification URL names (records keep the URL, not the choice)."""
    return "eventhub" if url[: len(EVENTHUB_PREFIX)].lower() == EVENTHUB_PREFIX.lower() else "webhook"
