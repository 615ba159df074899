"""The directory mirror end to end: the app subscribes to users, fills its mirror at start, turns users
notifications into debounced delta rounds and publishes one event per real change; the API serves users
from the mirror."""

from __future__ import annotations

import time

import pytest

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink
from tests.waiting import wait_until


@pytest.fixture(name="mirrored_app")
def _mirrored_app(start_app: StartApp, graphsim: SimControl) -> RunningApp:
    port = free_port()
    app = start_app(
        port=port,
        GRAPH_SUBSCRIPTIONS="users=updated,deleted",
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}/api",
        MIRROR_DEBOUNCE_SECONDS="1",
    )
    wait_until(lambda: len(graphsim.subscriptions()) == 1)
    app.host.wait_for_output("(first fill)", timeout=60)
    return app


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
