"""The operator dashboard in headless Chromium: it loads /api/status with its key and renders it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from tests.browser.conftest import Browser
from tests.e2e.conftest import StartApp
from tests.e2e.pipeline import subscribe
from tests.fixtures.graphsim import GraphSimServer

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def test_dashboard_renders_breakers_and_subscriptions(
    start_app: StartApp, graphsim: SimControl, graphsim_server: GraphSimServer, browser: Browser
) -> None:
    """With a tripped breaker and one subscription, the page (opened with ?code=<master key>) shows
    graph-directory as open and the subscription's resource and status, with no script errors; a screenshot
    is written to tests/artifacts/dashboard.png."""
    members = [u["id"] for u in graphsim.users() if u["accountEnabled"]][:3]
    group = graphsim.create_group(members=members)["id"]
    port = free_port()
    app = start_app(
        port=port,
        BREAKER_CONSECUTIVE_FAILURES="2",
        BREAKER_OPEN_SECONDS="60",
        GRAPH_SUBSCRIPTIONS=f"mailboxes(group={group})/messages=created",
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}/api",
    )
    app.host.wait_for_output("reconcile: created 3", timeout=30)
    subscribe(app, graphsim_server.base_url, "users", "updated")
    graphsim.add_fault(path=r"^/users", status=503)
    for user in graphsim.users()[:2]:
        assert app.get(f"/api/users/{user['id']}").status_code == 503

    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        try:
            response = page.goto(f"{app.host.base_url}/api/dashboard?code={app.host.master_key}")
            assert response is not None
            assert response.status == 200
            page.wait_for_selector("body[data-loaded='true']", timeout=15_000)

            breakers = page.locator("#breakers tbody tr")
            assert breakers.count() == 3
            directory = page.locator("#breakers tbody tr", has_text="graph-directory")
            assert directory.locator("td").nth(1).inner_text() == "open"
            assert page.locator("#subscriptions tbody tr").count() == 4  # the fleet's three and users
            users = page.locator("#subscriptions tbody tr", has_text="users/").count()
            assert users == 3
            fleet = page.locator("#fleets tbody tr")
            assert fleet.count() == 1
            cells = [fleet.locator("td").nth(n).inner_text() for n in range(5)]
            assert cells == [f"mailboxes(group={group})/messages", "3", "3", "0", "0"]
            assert page.locator("#queues tbody tr").count() == 8  # mirror-rounds and its poison queue included
            assert page.locator("#queue-chart rect").count() == 8  # one bar per queue
            assert page.locator("#error").inner_text() == ""
            assert errors == []

            ARTIFACTS.mkdir(exist_ok=True)
            screenshot = ARTIFACTS / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
        finally:
            page.close()
