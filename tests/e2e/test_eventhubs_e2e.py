"""The Event Hubs path end to end: desired-state entries marked ``@eventhub`` make the app subscribe with
Graph's ``EventHub:`` URL (no handshake); the Graph simulator writes notifications as events into the
harness's stand-in hub; the ``process_eventhub`` trigger feeds them to the same processors as the queue
path, so each version becomes one event on ``graph-events``, a failed batch comes again from the
checkpoint without duplicates, and a malformed event is parked once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink, drain_queue
from tests.waiting import wait_until

NAMESPACE = "graphsim-hub.servicebus.windows.net"
HUB = "graph-notifications"


def _start(start_app: StartApp, graphsim: SimControl, desired: str, **overrides: str) -> RunningApp:
    """The app with ``desired`` subscriptions, its hub connection naming the stand-in namespace, and the
    simulator delivering ``EventHub:`` URLs to the harness's stand-in."""
    port = free_port()
    graphsim.configure(eventhub_endpoint=f"http://127.0.0.1:{port}/_eventhubs")
    app = start_app(
        port=port,
        GRAPH_SUBSCRIPTIONS=desired,
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}/api",
        GRAPH_EVENTHUB__fullyQualifiedNamespace=NAMESPACE,
        GRAPH_EVENTHUB_TENANT="contoso.onmicrosoft.com",
        MIRROR_DEBOUNCE_SECONDS="1",
        **overrides,
    )
    wanted = len(desired.split(";"))
    assert wait_until(lambda: len(graphsim.subscriptions()) == wanted, 30), graphsim.subscriptions()
    return app


def _hub(app: RunningApp) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{app.host.base_url}/_eventhubs/{NAMESPACE}/{HUB}", timeout=10).json()
    return document


def _all_checkpointed(app: RunningApp) -> bool:
    return all(p["checkpoints"].get("$Default", 0) == p["events"] for p in _hub(app)["partitions"])


def _send_events(app: RunningApp, events: list[dict[str, Any]]) -> None:
    response = httpx.post(
        f"{app.host.base_url}/_eventhubs/{NAMESPACE}/{HUB}/messages",
        content=json.dumps(events),
        headers={"content-type": "application/vnd.microsoft.servicebus.json"},
        timeout=10,
    )
    assert response.status_code == 201


def test_users_and_messages_arrive_through_the_hub_once_per_version(start_app: StartApp, graphsim: SimControl) -> None:
    """Both subscriptions name the hub (notification and lifecycle URL), Graph's validation messages are
    ignored, a new message and two edits are three events, a user's change is one mirror event, and every
    event sent into the hub a second time (a redelivery) adds nothing."""
    user, other = graphsim.users()[0], graphsim.users()[1]
    app = _start(
        start_app, graphsim, f"users=updated,deleted@eventhub; users/{user['id']}/messages=created,updated@eventhub"
    )
    url = f"EventHub:https://{NAMESPACE}/eventhubname/{HUB}?tenantId=contoso.onmicrosoft.com"
    subscriptions = graphsim.subscriptions()
    assert {(s["notificationUrl"], s["lifecycleNotificationUrl"]) for s in subscriptions} == {(url, url)}
    validations = graphsim.deliveries(kind="validation", wait_idle=True)
    assert [(d["url"], d["status"]) for d in validations] == [(url, 201)] * 2  # written to the hub, no handshake
    app.host.wait_for_output("(first fill)", timeout=60)

    sink = EventSink(app)
    created = graphsim.create_message(user["id"], subject="via the hub")[0]
    graphsim.update_message(user["id"], created["id"], subject="edited once")
    graphsim.update_message(user["id"], created["id"], subject="edited twice")
    graphsim.update_user(other["id"], jobTitle="Hub tester")
    graphsim.wait_deliveries_idle()
    events = sink.wait_for(4, timeout=60, settle=2.0)
    kinds = Counter((e["type"], e.get("message_id") or e["user_id"]) for e in events)
    assert kinds == {
        ("messages.created", created["id"]): 1,
        ("messages.updated", created["id"]): 2,  # two versions, two events
        ("users.updated", other["id"]): 1,
    }
    assert all(d["status"] == 201 for d in graphsim.deliveries(kind="notification"))
    assert wait_until(lambda: _all_checkpointed(app), 10)

    # Graph redelivering: the same events once more, in the hub's own shape.
    stored = httpx.get(f"{app.host.base_url}/_eventhubs/{NAMESPACE}/{HUB}/events", timeout=10).json()
    assert len(stored) >= 4  # 2 validation messages, the messages and users notifications (coalesced per POST)
    _send_events(app, [{"Body": e["body"], "BrokerProperties": {"PartitionKey": e["partitionKey"]}} for e in stored])
    assert wait_until(lambda: _all_checkpointed(app), 20)
    assert sink.wait_for(len(events) + 1, timeout=3, settle=1.0) == events  # nothing new


def test_a_failed_batch_is_retried_from_the_checkpoint_and_a_malformed_event_is_parked_once(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """A malformed event and a real notification share one batch (one send, one partition key). Graph fails
    the notification's enrichment (three 503s, one logical call), so the invocation fails and nothing is
    checkpointed; the retry delivers the same batch from the checkpoint: the event is forwarded once, the
    malformed event was parked once (its marker says so on the second delivery)."""
    user = graphsim.users()[2]
    app = _start(start_app, graphsim, f"users/{user['id']}/messages=created@eventhub", FORWARD_ENRICH="true")
    (subscription,) = graphsim.subscriptions()
    assert wait_until(lambda: _all_checkpointed(app), 10)  # the validation message
    message = graphsim.create_message(user["id"], subject="enrich me")[0]
    item = {
        "subscriptionId": subscription["id"],
        "subscriptionExpirationDateTime": subscription["expirationDateTime"],
        "clientState": subscription["clientState"],
        "changeType": "created",
        "resource": f"Users/{user['id']}/Messages/{message['id']}",
        # Another version than the simulator's own notification names: a change of its own.
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": message["id"], "@odata.etag": 'W/"v1"'},
        "tenantId": "00000000-0000-0000-0000-0000000000aa",
    }
    graphsim.wait_deliveries_idle()
    assert wait_until(lambda: _all_checkpointed(app), 10)
    EventSink(app).wait_for(1, timeout=10)  # the simulator's own notification of it: taken away first
    graphsim.add_fault(r"/users/[^/]+/messages/[^/]+$", 503, method="GET", count=3)
    key = subscription["id"]
    _send_events(
        app,
        [
            {"Body": "this is not a notification", "BrokerProperties": {"PartitionKey": key}},
            {"Body": json.dumps({"value": [item]}), "BrokerProperties": {"PartitionKey": key}},
        ],
    )
    app.host.wait_for_output("process_eventhub: 2 events, attempt 1 of 5 failed", timeout=30)
    assert not _all_checkpointed(app)
    assert wait_until(lambda: _all_checkpointed(app), 30)
    events = EventSink(app).wait_for(1, timeout=10, settle=1.0)
    assert [(e["type"], e["message_id"]) for e in events] == [("messages.created", message["id"])]
    assert events[0]["data"]["subject"] == "enrich me"  # enriched on the retry
    poisoned = drain_queue(app, "graph-eventhub-poison")
    assert len(poisoned) == 1
    assert "this is not a notification" in poisoned[0]
    assert drain_queue(app, "graph-notifications-poison") == []


def test_a_lifecycle_event_through_the_hub_recreates_the_subscription_on_the_hub(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """``subscriptionRemoved`` arrives as an event, reaches the lifecycle processor, and the replacement
    subscription keeps delivering to the hub."""
    user = graphsim.users()[3]
    app = _start(start_app, graphsim, f"users/{user['id']}/messages=created@eventhub")
    (old,) = graphsim.subscriptions()
    graphsim.lifecycle(old["id"], "subscriptionRemoved")
    assert wait_until(lambda: [s for s in graphsim.subscriptions() if s["id"] != old["id"]], 30)
    (new,) = graphsim.subscriptions()
    assert new["notificationUrl"] == new["lifecycleNotificationUrl"] == old["notificationUrl"]
    assert [d["status"] for d in graphsim.deliveries(kind="lifecycle")] == [201]
    created = graphsim.create_message(user["id"], subject="after the swap")[0]
    events = EventSink(app).wait_for(1, timeout=30, settle=1.0)
    # One event for the new version: the notification's messages.created, or messages.updated when the
    # recreation's delta catch-up (still running) saw the message first; both share the version's id.
    assert [e["message_id"] for e in events] == [created["id"]]
    assert events[0]["type"] in ("messages.created", "messages.updated")
