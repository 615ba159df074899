"""Graph-shaped notification items, following the shapes in Microsoft's changeNotification docs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.events.model import Event

TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
SUBSCRIPTION = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
USER = "0c4d5e6f-1a2b-4c3d-8e9f-a1b2c3d4e5f6"
MESSAGE = "AAMkAGUwNjQ4ZjIxAAA="
SECRET = "s3cr3t-client-state-value"


def user_change(change_type: str = "updated", *, user: str = USER, secret: str | None = SECRET) -> dict[str, Any]:
    """A users subscription's item: basic notification, resourceData with @odata.type/@odata.id/id."""
    item: dict[str, Any] = {
        "subscriptionId": SUBSCRIPTION,
        "subscriptionExpirationDateTime": "2024-03-20T11:00:00.0000000Z",
        "changeType": change_type,
        "resource": f"Users/{user}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.User",
            "@odata.id": f"Users/{user}",
            "id": user,
            "organizationId": TENANT,
        },
        "tenantId": TENANT,
    }
    if secret is not None:
        item["clientState"] = secret
    return item


def message_change(
    change_type: str = "created",
    *,
    message: str = MESSAGE,
    etag: str | None = 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
) -> dict[str, Any]:
    """A mail subscription's item as in the docs' example (user named ``{user guid}@{tenant guid}``)."""
    resource = f"Users/{USER}@{TENANT}/Messages/{message}"
    data: dict[str, Any] = {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": resource, "id": message}
    if etag is not None:
        data["@odata.etag"] = etag
    return {
        "id": "lsgTZMr9KwAAA",
        "subscriptionId": SUBSCRIPTION,
        "subscriptionExpirationDateTime": "2024-03-19T22:11:09.952Z",
        "clientState": SECRET,
        "changeType": change_type,
        "resource": resource,
        "tenantId": TENANT,
        "resourceData": data,
    }


def lifecycle(event: str = "reauthorizationRequired", *, secret: str = SECRET) -> dict[str, Any]:
    """A lifecycle item: ``lifecycleEvent`` instead of ``changeType``, no resource data."""
    return {
        "subscriptionId": SUBSCRIPTION,
        "subscriptionExpirationDateTime": "2024-03-20T11:00:00.0000000Z",
        "tenantId": TENANT,
        "clientState": secret,
        "lifecycleEvent": event,
    }


def body(*items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


def make_event(event_type: str = "users.updated") -> Event:
    """A normalized event of ``event_type`` for user ``u1`` (as delta catch-up would publish it)."""
    return Event(
        id="e1",
        type=event_type,
        resource="Users/u1",
        change_type=event_type.split(".")[1],
        subscription_id="s1",
        tenant_id="t1",
        user_id="u1",
        message_id=None,
        received_at=datetime(2024, 3, 1, tzinfo=UTC),
        source="delta",
    )
