"""Change and lifecycle notifications delivered by the simulator as Graph delivers them."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.graphsim.client import SimControl
from devtools.graphsim.seed import TENANT_ID
from tests.integration.graphsim.receiver import Receiver
from tests.integration.graphsim.test_subscriptions import new_subscription

pytestmark = pytest.mark.integration


async def test_created_message_notification_has_graphs_shape(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """A message created through the control API reaches the receiver with the clientState."""
    sub = await graph_client.subscriptions.post(
        new_subscription(receiver, f"users/{user['id']}/mailFolders('Inbox')/messages")
    )
    [message] = graphsim.create_message(user["id"], subject="hello")
    graphsim.wait_deliveries_idle()
    [item] = receiver.items()
    resource = f"Users/{user['id']}/Messages/{message['id']}"
    assert item == {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": item["subscriptionExpirationDateTime"],
        "changeType": "created",
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": resource,
            "@odata.etag": f'W/"{message["changeKey"]}"',
            "id": message["id"],
        },
        "clientState": "s3cret-state",
        "tenantId": TENANT_ID,
    }


async def test_only_matching_change_types_and_folders_notify(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """A 'deleted'-only inbox subscription ignores creations, and messages outside the inbox."""
    resource = f"users/{user['id']}/mailFolders/inbox/messages"
    await graph_client.subscriptions.post(new_subscription(receiver, resource, change_type="deleted"))
    [inbox_message] = graphsim.create_message(user["id"])
    [archived] = graphsim.create_message(user["id"], folder="archive")
    graphsim.delete_message(user["id"], archived["id"])
    graphsim.delete_message(user["id"], inbox_message["id"])
    graphsim.wait_deliveries_idle()
    assert [(i["changeType"], i["resourceData"]["id"]) for i in receiver.items()] == [("deleted", inbox_message["id"])]


async def test_user_updates_notify_users_subscriptions(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """A 'users' subscription hears about user updates as Users/{id} with #Microsoft.Graph.User."""
    await graph_client.subscriptions.post(new_subscription(receiver, "users", change_type="updated,deleted"))
    graphsim.update_user(user["id"], jobTitle="Astronaut")
    graphsim.wait_deliveries_idle()
    [item] = receiver.items()
    assert item["resource"] == f"Users/{user['id']}"
    assert item["resourceData"]["@odata.type"] == "#Microsoft.Graph.User"
    assert item["changeType"] == "updated"


async def test_failing_receiver_gets_retries_with_backoff(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """A receiver answering 500 is retried up to delivery_max_attempts, each attempt logged."""
    graphsim.configure(delivery_max_attempts=3, delivery_backoff_s=0.05)
    await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    receiver.status = 500
    graphsim.create_message(user["id"])
    graphsim.wait_deliveries_idle()
    attempts = graphsim.deliveries(kind="notification")
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"),
        (2, 500, "retrying"),
        (3, 500, "failed"),
    ]
    assert len(receiver.posts()) == 3


async def test_slow_receiver_times_out_and_is_retried(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """An answer slower than delivery_timeout_s counts as a failure, then succeeds once fast."""
    graphsim.configure(delivery_timeout_s=0.2, delivery_backoff_s=0.05)
    await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    receiver.delay_s = 0.5
    graphsim.create_message(user["id"])
    receiver.wait_for(lambda: len(receiver.posts()) >= 1)
    receiver.delay_s = 0
    graphsim.wait_deliveries_idle()
    outcomes = [(a["outcome"], a["error"] is not None) for a in graphsim.deliveries(kind="notification")]
    assert outcomes[0] == ("retrying", True)
    assert outcomes[-1] == ("delivered", False)


async def test_bursts_are_coalesced_and_delivered_exactly_once(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """250 new messages arrive in several POSTs of at most max_items_per_post, each item once."""
    await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    created = graphsim.create_message(user["id"], count=250)
    graphsim.wait_deliveries_idle()
    posts = receiver.posts()
    assert 3 <= len(posts) < 250
    assert all(len(p["value"]) <= 100 for p in posts)
    delivered = [item["resourceData"]["id"] for item in receiver.items()]
    assert sorted(delivered) == sorted(m["id"] for m in created)
    assert all(d["outcome"] == "delivered" for d in graphsim.deliveries(kind="notification"))


async def test_lifecycle_event_reaches_the_lifecycle_url(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """reauthorizationRequired goes to lifecycleNotificationUrl; subscriptionRemoved also deletes."""
    sub = await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    graphsim.lifecycle(sub.id, "reauthorizationRequired")
    graphsim.lifecycle(sub.id, "subscriptionRemoved")
    graphsim.wait_deliveries_idle()
    events = receiver.items("/lifecycle")
    assert [e["lifecycleEvent"] for e in events] == ["reauthorizationRequired", "subscriptionRemoved"]
    assert events[0]["subscriptionId"] == sub.id
    assert events[0]["clientState"] == "s3cret-state"
    assert events[0]["tenantId"] == TENANT_ID
    assert events[0]["subscriptionExpirationDateTime"]
    assert receiver.items("/notify") == []
    assert graphsim.subscriptions() == []
