"""Subscriptions end to end: the app subscribes itself, is managed over HTTP, and reacts to lifecycle events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink
from tests.waiting import wait_until


def _self_subscribing_app(start_app: StartApp, graphsim: SimControl, mailbox: str) -> RunningApp:
    port = free_port()
    return start_app(
        port=port,
        GRAPH_SUBSCRIPTIONS=f"users=updated,deleted; users/{mailbox}/messages=created,updated,deleted",
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}/api",
    )


def _both_registered(app: RunningApp, graphsim: SimControl) -> list[dict[str, Any]]:
    """Graph's two subscriptions, once the app has also recorded both in its registry: Graph holds a
    subscription a moment before the app does, and a lifecycle event sent in that moment is rejected (its
    clientState is not known yet), as it would be in Azure."""
    wait_until(lambda: app.host.output.count("created subscription") >= 2, timeout=30)
    subscriptions: list[dict[str, Any]] = graphsim.subscriptions()
    assert len(subscriptions) == 2
    return subscriptions


def _admin(app: RunningApp) -> httpx.Client:
    return httpx.Client(base_url=app.host.base_url, headers={"x-functions-key": app.host.master_key}, timeout=30)


def test_app_subscribes_itself_at_start_and_notifications_flow(start_app: StartApp, graphsim: SimControl) -> None:
    """With a desired state configured, the app creates its subscriptions on start (handshake answered by
    its own webhook) and a change in Graph arrives downstream as an event within seconds."""
    user = graphsim.users()[0]
    app = _self_subscribing_app(start_app, graphsim, user["id"])
    subscriptions = wait_until(lambda: len(graphsim.subscriptions()) == 2 and graphsim.subscriptions())
    assert sorted(s["resource"] for s in subscriptions) == sorted(["users", f"users/{user['id']}/messages"])
    # Users are mirrored (docs/mirror.md): the mirror's first fill takes the directory as it is, so the
    # change is made after it; the notification then triggers a delta round that publishes the change.
    app.host.wait_for_output("renewal: renewed", timeout=30)
    app.host.wait_for_output("(first fill)", timeout=60)

    graphsim.update_user(user["id"], jobTitle="Chief Tester")
    events = EventSink(app).wait_for(1, settle=1.0)
    assert [(e["type"], e["user_id"]) for e in events] == [("users.updated", user["id"])]


def test_management_api_lists_creates_renews_deletes_without_client_state(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """Admins manage subscriptions over HTTP; no response ever contains a clientState."""
    user = graphsim.users()[1]
    app = _self_subscribing_app(start_app, graphsim, user["id"])
    wait_until(lambda: len(graphsim.subscriptions()) == 2)
    with _admin(app) as admin:
        created = admin.post("/api/subscriptions", json={"resource": f"users/{user['id']}", "changeType": "updated"})
        assert created.status_code == 201, created.text
        subscription = created.json()
        assert subscription["origin"] == "adhoc"
        listed = admin.get("/api/subscriptions")
        assert len(listed.json()["items"]) == 3
        renewed = admin.post(f"/api/subscriptions/{subscription['id']}/renew")
        assert renewed.status_code == 200
        assert renewed.json()["renewedAt"] is not None
        assert admin.get(f"/api/subscriptions/{subscription['id']}").status_code == 200
        assert admin.delete(f"/api/subscriptions/{subscription['id']}").status_code == 204
        assert admin.get(f"/api/subscriptions/{subscription['id']}").status_code == 404
        for response in (listed, created, renewed):
            assert "clientState" not in response.text
            assert "client_state" not in response.text
    sim_states = [s["clientState"] for s in graphsim.subscriptions()]
    assert all(state and state not in listed.text for state in sim_states)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"resource": "groups", "changeType": "updated"}, "resource"),
        ({"resource": "users", "changeType": "exploded"}, "change"),
        ({"resource": "users/../../secrets", "changeType": "updated"}, "resource"),
        ({"resource": "users"}, "changeType"),
        ([1, 2, 3], "JSON object"),
        ({"resource": "users", "changeType": "updated", "pad": "x" * 20_000}, "at most"),
    ],
)
def test_management_api_rejects_bad_input(app: RunningApp, graphsim: SimControl, body: object, message: str) -> None:
    """Unknown resources, bad change types, malformed or oversized bodies are 400s with a clear message."""
    with _admin(app) as admin:
        response = admin.post("/api/subscriptions", json=body)
    assert response.status_code == 400, response.text
    assert message.lower() in response.json()["error"]["message"].lower()
    assert graphsim.count("POST /subscriptions") == 0


def test_management_api_needs_the_admin_key(app: RunningApp) -> None:
    """The function key is not enough for subscription management (admin level)."""
    assert app.get("/api/subscriptions").status_code == 401


def test_removed_subscription_is_recreated_and_the_gap_is_caught_up(start_app: StartApp, graphsim: SimControl) -> None:
    """Graph removes the mailbox subscription (lifecycle subscriptionRemoved); messages created while it was
    gone reach downstream once through delta catch-up, and a new subscription exists."""
    user = graphsim.users()[2]
    app = _self_subscribing_app(start_app, graphsim, user["id"])
    subscriptions = _both_registered(app, graphsim)
    mailbox = next(s for s in subscriptions if s["resource"].endswith("/messages"))

    graphsim.lifecycle(mailbox["id"], "subscriptionRemoved")  # Graph drops it and tells us
    missed = graphsim.create_message(user["id"], count=3)  # nobody is subscribed to these now
    recreated = wait_until(
        lambda: [
            s for s in graphsim.subscriptions() if s["resource"].endswith("/messages") and s["id"] != mailbox["id"]
        ]
    )
    assert recreated, "the mailbox subscription was not recreated"
    events = EventSink(app).wait_for(3, timeout=40, settle=2.0)
    message_events = [e for e in events if e["type"].startswith("messages.")]
    assert sorted(e["message_id"] for e in message_events) == sorted(m["id"] for m in missed)


def test_reauthorization_required_reauthorizes(start_app: StartApp, graphsim: SimControl) -> None:
    """A reauthorizationRequired lifecycle event leads to a reauthorize call to Graph for that subscription."""
    user = graphsim.users()[3]
    app = _self_subscribing_app(start_app, graphsim, user["id"])
    subscriptions = _both_registered(app, graphsim)
    graphsim.lifecycle(subscriptions[0]["id"], "reauthorizationRequired")
    path = rf"^/subscriptions/{subscriptions[0]['id']}/reauthorize$"
    assert wait_until(lambda: graphsim.requests(path_regex=path, method="POST"), timeout=20)


def test_catch_up_overlapping_live_notifications_has_no_double_effects(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """A message already delivered live is seen again by the delta catch-up that `missed` triggers;
    downstream still gets it once (live and delta items of one version share a dedupe identity)."""
    user = graphsim.users()[4]
    app = _self_subscribing_app(start_app, graphsim, user["id"])
    subscriptions = _both_registered(app, graphsim)
    mailbox = next(s for s in subscriptions if s["resource"].endswith("/messages"))
    sink = EventSink(app)

    live = graphsim.create_message(user["id"])[0]
    sink.wait_for(1, settle=1.0)
    graphsim.clear_requests()
    graphsim.lifecycle(mailbox["id"], "missed")
    assert wait_until(lambda: graphsim.requests(path_regex=r"/messages/delta"), timeout=20), "no catch-up ran"
    events = sink.wait_for(2, timeout=5, settle=3.0)
    by_message = [e["message_id"] for e in events if e["type"].startswith("messages.")]
    assert by_message.count(live["id"]) == 1
