"""Operations end to end: /api/status and /api/dashboard through the harness, and logs free of secrets."""

from __future__ import annotations

import json
import re
import time

import httpx

from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink, subscribe
from tests.fixtures.graphsim import GraphSimServer


def admin(app: RunningApp) -> httpx.Client:
    return httpx.Client(base_url=app.host.base_url, headers={"x-functions-key": app.host.master_key}, timeout=30)


def trip_directory_breaker(app: RunningApp, graphsim: SimControl) -> None:
    """Graph's /users answers 503: with BREAKER_CONSECUTIVE_FAILURES=2 the first request's two attempts trip it."""
    graphsim.add_fault(path=r"^/users", status=503)
    for user in graphsim.users()[-3:]:  # not cached by the tests
        assert app.get(f"/api/users/{user['id']}").status_code == 503


def test_status_and_dashboard_show_a_breaker_tripped_by_graph_faults(start_app: StartApp, graphsim: SimControl) -> None:
    """After Graph fails, /api/status (master key) shows graph-directory open with a retry-after, the 5xx and
    breaker-rejected outcomes, and all six queues; the dashboard page is served with the master key only."""
    app = start_app(BREAKER_CONSECUTIVE_FAILURES="2", BREAKER_OPEN_SECONDS="60")
    trip_directory_breaker(app, graphsim)

    with admin(app) as client:
        response = client.get("/api/status")
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        document = response.json()
        page = client.get("/api/dashboard")
    breakers = {b["key"]: b for b in document["breakers"]}
    assert breakers["graph-directory"]["state"] == "open"
    assert 0 < breakers["graph-directory"]["retry_after_seconds"] <= 60
    assert breakers["graph-mail"]["state"] == "closed"
    assert document["graph"]["outcomes"]["5xx"] >= 2
    assert document["graph"]["outcomes"]["breaker_rejected"] >= 1
    assert len(document["queues"]) == 8  # four work queues (mirror-rounds included) and their -poison twins
    assert document["errors"] == {}

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert '<table id="breakers"' in page.text

    for route in ("/api/status", "/api/dashboard"):
        assert app.get(route).status_code == 401  # the function key is not enough
        assert httpx.get(app.host.base_url + route, timeout=10).status_code == 401


def test_logs_carry_invocation_ids_and_never_a_secret(
    start_app: StartApp, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    """A run with JSON logs (notifications with a real clientState, a forged one refused, Graph calls with
    the static token, keys in query strings, a tripped breaker) prints structured lines with invocation
    ids, and none of: the clientState, the Graph token, the storage account key, the function or master key."""
    app = start_app(LOG_FORMAT="json", BREAKER_CONSECUTIVE_FAILURES="2")
    user = graphsim.users()[0]
    subscription_id, client_state = subscribe(app, graphsim_server.base_url, "users", "updated")
    graphsim.update_user(user["id"], jobTitle="Observer")
    assert EventSink(app).wait_for(1)
    forged_item = {"subscriptionId": subscription_id, "clientState": "forged", "changeType": "updated"}
    forged = {"value": [{**forged_item, "resource": f"Users/{user['id']}"}]}
    assert httpx.post(f"{app.host.base_url}/api/notifications", json=forged, timeout=10).status_code == 202
    assert httpx.get(f"{app.host.base_url}/api/users/{user['id']}?code={app.host.function_key}").status_code == 200
    trip_directory_breaker(app, graphsim)
    assert httpx.get(f"{app.host.base_url}/api/status?code={app.host.master_key}", timeout=30).status_code == 200
    assert httpx.get(f"{app.host.base_url}/api/dashboard?code={app.host.master_key}").status_code == 200
    time.sleep(0.5)  # let the last lines reach the log file

    output = app.host.output
    account_key = re.search(r"AccountKey=([^;]+)", app.env["AzureWebJobsStorage"])
    assert account_key is not None
    secrets = {
        "clientState": client_state,
        "GRAPH_STATIC_TOKEN": app.env["GRAPH_STATIC_TOKEN"],
        "AccountKey": account_key.group(1),
        "function key": app.host.function_key,
        "master key": app.host.master_key,
    }
    assert [name for name, value in secrets.items() if value in output] == []

    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    ours = [r for r in records if r.get("logger", "").startswith("graphapp.")]
    assert any(r["operation"] == "notifications" and r["invocation_id"] != "-" for r in ours)
    assert any(r["operation"] == "get_user" and "graph-directory" in r["message"] for r in ours)
