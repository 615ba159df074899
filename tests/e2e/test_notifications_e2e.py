"""The notification pipeline end to end: simulator → webhook → Storage queue → processor → effects."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from devtools.azurite import Azurite
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp, StartApp, app_env
from tests.e2e.pipeline import EventSink, drain_queue, send_to_queue, subscribe
from tests.fixtures.graphsim import GraphSimServer


def test_new_message_invalidates_cached_pages_and_forwards_one_event(
    app: RunningApp, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    """A message created in Graph reaches the webhook, is queued, processed once: the mailbox's cached
    pages are dropped and exactly one messages.created event lands in graph-events."""
    user = graphsim.users()[0]
    messages_url = f"/api/users/{user['id']}/messages"
    assert app.get(messages_url).headers["X-Cache"] == "miss"
    assert app.get(messages_url).headers["X-Cache"].startswith("hit")
    subscribe(app, graphsim_server.base_url, f"users/{user['id']}/messages", "created,updated,deleted")

    created = graphsim.create_message(user["id"], subject="fresh news")[0]
    graphsim.wait_deliveries_idle()
    events = EventSink(app).wait_for(1, settle=1.0)

    assert [(e["type"], e["message_id"], e["user_id"]) for e in events] == [
        ("messages.created", created["id"], user["id"])
    ]
    after = app.get(messages_url)
    assert after.headers["X-Cache"] == "miss"
    assert after.json()["items"][0]["id"] == created["id"]


def test_redelivered_notification_has_one_effect(
    app: RunningApp, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    """Graph delivering the same notification twice yields one event downstream."""
    user = graphsim.users()[1]
    subscription_id, client_state = subscribe(app, graphsim_server.base_url, "users", "updated")
    item = {
        "subscriptionId": subscription_id,
        "clientState": client_state,
        "changeType": "updated",
        "resource": f"Users/{user['id']}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user['id']}", "id": user["id"]},
        "tenantId": "00000000-0000-0000-0000-0000000000aa",
    }
    for _ in range(2):
        response = httpx.post(f"{app.host.base_url}/api/notifications", json={"value": [item]}, timeout=10)
        assert response.status_code == 202
        assert response.json()["accepted"] == 1
    events = EventSink(app).wait_for(1, settle=2.0)
    assert [e["type"] for e in events] == ["users.updated"]


def test_wrong_or_missing_client_state_is_dropped_not_queued(
    app: RunningApp, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    """Items with a wrong or missing clientState are counted as dropped; only the genuine one is queued."""
    user = graphsim.users()[2]
    subscription_id, client_state = subscribe(app, graphsim_server.base_url, "users", "updated")
    base = {"subscriptionId": subscription_id, "changeType": "updated", "resource": f"Users/{user['id']}"}
    body = {
        "value": [
            {**base, "clientState": client_state},
            {**base, "clientState": "guessed"},
            dict(base),
            {**base, "subscriptionId": "11111111-1111-1111-1111-111111111111", "clientState": client_state},
        ]
    }
    response = httpx.post(f"{app.host.base_url}/api/notifications", json=body, timeout=10)
    assert response.status_code == 202
    result = response.json()
    assert result["accepted"] == 1
    assert sum(result["dropped"].values()) == 3
    assert client_state not in app.host.output
    assert [e["type"] for e in EventSink(app).wait_for(1, settle=1.0)] == ["users.updated"]


def test_validation_handshake_echoes_the_token_as_plain_text(app: RunningApp) -> None:
    """POST ?validationToken=... answers 200 text/plain with the decoded token, never as HTML."""
    token = "Validation: Testing client application reachability <b>x</b>"
    for path in ("/api/notifications", "/api/notifications/lifecycle"):
        response = httpx.post(f"{app.host.base_url}{path}", params={"validationToken": token}, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == token


def test_hostile_bodies_are_4xx_and_nothing_is_queued(app: RunningApp) -> None:
    """Non-JSON, wrong shapes, deep nesting and 10,000 items are 400s, an oversized body 413; none is a 5xx."""
    url = f"{app.host.base_url}/api/notifications"
    item = {"subscriptionId": "x", "clientState": "y", "changeType": "updated", "resource": "Users/1"}
    bodies: list[bytes] = [
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"value": {}}',
        b'{"value": "x"}',
        b"[" * 100_000,
        json.dumps({"value": [item] * 10_000}).encode(),
    ]
    for body in bodies:
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 400, (body[:40], response.status_code)
        assert response.json()["error"]["code"] == "invalid_request"
    oversized = b'{"value": [' + b'"' + b"a" * (2 * 1024 * 1024) + b'"]}'
    response = httpx.post(url, content=oversized, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert drain_queue(app, "graph-notifications") == []


def test_malformed_queue_message_goes_to_poison(app: RunningApp) -> None:
    """A message the processor cannot parse is moved to graph-notifications-poison, not retried forever."""
    send_to_queue(app, "graph-notifications", "this is not a notification envelope")
    deadline = time.monotonic() + 20
    poisoned: list[str] = []
    while not poisoned and time.monotonic() < deadline:
        time.sleep(0.5)
        poisoned = drain_queue(app, "graph-notifications-poison")
    assert len(poisoned) == 1
    assert "this is not a notification envelope" in poisoned[0]


def test_storage_outage_during_delivery_loses_nothing(
    start_app: StartApp, graphsim: SimControl, tmp_path: Path
) -> None:
    """With Storage down the webhook answers 503 and Graph retries; once Storage is back, all 1,000
    notifications are processed: 1,000 distinct events downstream, none lost, none doubled."""
    azurite = Azurite(location=tmp_path / "azurite")
    azurite.start()
    try:
        app = start_app(env=app_env(azurite.connection_string, _graph_url(graphsim)))
        user = graphsim.users()[3]
        subscribe(app, _graph_url(graphsim), f"users/{user['id']}/messages", "created")
        graphsim.configure(delivery_max_attempts=30, delivery_backoff_s=0.5, delivery_backoff_max_s=2)
        app.get(f"/api/users/{user['id']}")  # warm the subscription lookup path

        azurite.stop(remove_data=False)
        restart = threading.Timer(6.0, azurite.start)
        restart.start()
        graphsim.create_message(user["id"], count=1000)
        restart.join()
        graphsim.wait_deliveries_idle(timeout_s=120)

        deliveries = graphsim.deliveries(kind="notification")
        assert any(d.get("status") == 503 for d in deliveries), "the outage was not observed by Graph"
        events = EventSink(app).wait_for(1000, timeout=180, settle=3.0)
        counts = Counter(e["message_id"] for e in events)
        assert len(counts) == 1000
        assert max(counts.values()) == 1
    finally:
        azurite.stop()


def _graph_url(graphsim: SimControl) -> str:
    return graphsim.root_url.rstrip("/") + "/v1.0"
