"""The directory mirror end to end: the app subscribes to users, fills its mirror at start, turns users
notifications into debounced delta rounds and publishes one event per real change; the API serves users
from the mirror."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink
from tests.waiting import wait_until


def _start_mirrored(start_app: StartApp, graphsim: SimControl, debounce_seconds: int = 1) -> RunningApp:
    port = free_port()
    app = start_app(
        port=port,
        GRAPH_SUBSCRIPTIONS="users=updated,deleted",
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}/api",
        MIRROR_DEBOUNCE_SECONDS=str(debounce_seconds),
    )
    wait_until(lambda: len(graphsim.subscriptions()) == 1)
    app.host.wait_for_output("(first fill)", timeout=60)
    return app


@pytest.fixture(name="mirrored_app")
def _mirrored_app(start_app: StartApp, graphsim: SimControl) -> RunningApp:
    return _start_mirrored(start_app, graphsim)


def _lose_notifications(graphsim: SimControl) -> dict[str, Any]:
    """Graph stops delivering (the subscription vanishes silently in the simulator; the app's registry still
    holds it, so a notification we post ourselves is accepted). Returns the subscription as Graph had it."""
    (subscription,) = graphsim.subscriptions()
    graphsim.expire_subscription(subscription["id"])
    return subscription


def _post_notification(app: RunningApp, subscription: dict[str, Any], user_id: str) -> None:
    """One users notification exactly as Graph sends it (no etag: users notifications have none)."""
    resource = f"Users/{user_id}"
    item = {
        "subscriptionId": subscription["id"],
        "subscriptionExpirationDateTime": subscription["expirationDateTime"],
        "changeType": "updated",
        "resource": resource,
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": resource, "id": user_id},
        "clientState": subscription["clientState"],
        "tenantId": "00000000-0000-0000-0000-000000000001",
    }
    response = httpx.post(f"{app.host.base_url}/api/notifications", json={"value": [item]}, timeout=10)
    assert response.status_code == 202, response.text


def _rounds(app: RunningApp) -> list[str]:
    """The mirror-round summary lines the app logged so far."""
    return [line for line in app.host.output.splitlines() if "mirror round:" in line]


def test_two_updates_two_seconds_apart_are_two_events_and_reads_come_from_the_mirror(
    mirrored_app: RunningApp, graphsim: SimControl
) -> None:
    """Two changes with a round between them are two events naming two versions (no 5-minute window any
    more). Changes closer together than one round (debounce + queue latency) are one event naming the
    latest version: delta reports states, not each step (docs/mirror.md)."""
    user = graphsim.users()[0]
    sink = EventSink(mirrored_app)
    graphsim.update_user(user["id"], jobTitle="First")
    sink.wait_for(1, timeout=40)
    time.sleep(2)
    graphsim.update_user(user["id"], jobTitle="Second")

    events = sink.wait_for(2, timeout=40, settle=3.0)

    assert [(e["type"], e["user_id"]) for e in events] == [("users.updated", user["id"])] * 2
    assert len({e["version"] for e in events}) == 2
    graphsim.clear_requests()
    response = mirrored_app.get(f"/api/users/{user['id']}")
    assert response.status_code == 200
    assert response.headers["X-Cache"] == "mirror"
    assert response.json()["jobTitle"] == "Second"
    by_upn = mirrored_app.get(f"/api/users/{user['userPrincipalName']}")
    assert by_upn.headers["X-Cache"] == "mirror"
    assert graphsim.requests(route="GET /users/{id}") == []


def test_a_rename_retires_the_old_upn_and_a_deletion_answers_404(
    mirrored_app: RunningApp, graphsim: SimControl
) -> None:
    renamed, deleted = graphsim.users()[1], graphsim.users()[2]
    old_upn, new_upn = renamed["userPrincipalName"], "renamed.e2e@contoso.example"
    assert mirrored_app.get(f"/api/users/{old_upn}").status_code == 200
    sink = EventSink(mirrored_app)
    graphsim.update_user(renamed["id"], userPrincipalName=new_upn)
    graphsim.delete_user(deleted["id"])

    events = sink.wait_for(2, timeout=40, settle=2.0)

    assert sorted((e["type"], e["user_id"]) for e in events) == sorted(
        [("users.updated", renamed["id"]), ("users.deleted", deleted["id"])]
    )
    assert mirrored_app.get(f"/api/users/{old_upn}").status_code == 404
    now = mirrored_app.get(f"/api/users/{new_upn}")
    assert now.status_code == 200
    assert now.json()["id"] == renamed["id"]
    assert mirrored_app.get(f"/api/users/{deleted['id']}").status_code == 404


def test_one_notification_delivered_three_times_costs_one_round_and_one_event(
    start_app: StartApp, graphsim: SimControl
) -> None:
    app = _start_mirrored(start_app, graphsim, debounce_seconds=3)
    subscription = _lose_notifications(graphsim)
    user = graphsim.users()[0]
    graphsim.update_user(user["id"], jobTitle="Delivered thrice")
    rounds_before = len(_rounds(app))
    sink = EventSink(app)

    for _ in range(3):
        _post_notification(app, subscription, user["id"])
    events = sink.wait_for(1, timeout=40, settle=5.0)

    assert [(e["type"], e["user_id"]) for e in events] == [("users.updated", user["id"])]
    assert len(_rounds(app)) - rounds_before == 1


def test_a_410_resync_without_real_changes_publishes_nothing(mirrored_app: RunningApp, graphsim: SimControl) -> None:
    subscription = _lose_notifications(graphsim)
    graphsim.invalidate_delta("users")
    sink = EventSink(mirrored_app)

    _post_notification(mirrored_app, subscription, graphsim.users()[0]["id"])
    mirrored_app.host.wait_for_output("(full resync)", timeout=40)

    assert sink.wait_for(1, timeout=3) == []
    assert "0 created, 0 updated, 0 deleted" in _rounds(mirrored_app)[-1]


def test_a_resync_after_three_lost_changes_publishes_exactly_three(
    mirrored_app: RunningApp, graphsim: SimControl
) -> None:
    """Three changes whose notifications never came, and a 410 on top: the next round (here signalled by an
    unrelated notification; the safety-net timer in production) publishes the three and nothing else."""
    subscription = _lose_notifications(graphsim)
    changed, removed = graphsim.users()[3], graphsim.users()[4]
    graphsim.update_user(changed["id"], department="Lost update")
    graphsim.delete_user(removed["id"])
    created = graphsim.create_user(displayName="Lost Creation", userPrincipalName="lost.creation@contoso.example")
    graphsim.invalidate_delta("users")
    sink = EventSink(mirrored_app)

    _post_notification(mirrored_app, subscription, graphsim.users()[0]["id"])
    events = sink.wait_for(3, timeout=40, settle=3.0)

    assert sorted((e["type"], e["user_id"]) for e in events) == sorted(
        [
            ("users.updated", changed["id"]),
            ("users.deleted", removed["id"]),
            ("users.created", created["id"]),
        ]
    )
    assert mirrored_app.get(f"/api/users/{created['userPrincipalName']}").status_code == 200


def test_a_round_interrupted_by_503s_resumes_from_its_last_saved_page(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """250 changed users are three delta pages; Graph answers 503 from the second page on, past the retry
    budget: the round fails, its queue message comes back, and the rerun starts at the saved page; every
    change is published exactly once."""
    graphsim.reset(users=250, messages_per_user=0)
    app = _start_mirrored(start_app, graphsim)
    subscription = _lose_notifications(graphsim)
    users = graphsim.users()
    for user in users:
        graphsim.update_user(user["id"], department="Moved")
    sink = EventSink(app)
    # Every first page passes, whichever round reads it (the app may also recreate the expired subscription
    # and signal a round of its own), every later page fails: the first round to run publishes one page.
    fault = graphsim.add_fault(r"^/users/delta$", 503, query_param="$skiptoken")

    mark = len(app.host.output)
    _post_notification(app, subscription, users[0]["id"])
    app.host.wait_for_output("mirror_round: message", timeout=40, since=mark)  # the failed attempt
    # Retries fail at the second page while the fault stands, so waiting longer cannot add to the 100.
    published_before_retry = len(sink.wait_for(100, timeout=30))
    graphsim.remove_fault(fault)
    graphsim.clear_requests()
    events = sink.wait_for(250, timeout=60, settle=3.0)

    assert published_before_retry == 100, app.host.output[mark:][-4000:]  # the first page, saved with it
    ids = [e["user_id"] for e in events]
    assert len(ids) == len(set(ids)) == 250
    resumed = graphsim.requests(route="GET /users/delta")
    assert resumed, "the round did not run again"
    assert "skiptoken" in str(resumed[0].get("path", "")) + str(resumed[0].get("query", ""))
