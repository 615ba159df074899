"""A cold instance whose Table Storage is unreachable (queues still answer): the users API degrades by the
breaker's storage-outage policy, never with a 500, and health says so."""

from __future__ import annotations

import re

import pytest

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import StartApp, app_env
from tests.fixtures.graphsim import GraphSimServer

pytestmark = pytest.mark.e2e


def _without_tables(connection_string: str) -> str:
    """The same account, but its table endpoint is a loopback port nobody listens on."""
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    return re.sub(r"TableEndpoint=[^;]+", f"TableEndpoint={dead}", connection_string)


@pytest.mark.parametrize(
    ("policy", "status", "x_cache"), [("fail_open", 200, "bypass"), ("fail_closed", 503, None)], ids=str
)
def test_cold_instance_without_table_storage(
    start_app: StartApp,
    storage_connection_string: str,
    graphsim_server: GraphSimServer,
    graphsim: SimControl,
    policy: str,
    status: int,
    x_cache: str | None,
) -> None:
    """fail_open: the user comes from Graph with the cache honestly bypassed; fail_closed: 503 with
    Retry-After. Health is 503 either way, and no answer is a 500."""
    env = app_env(_without_tables(storage_connection_string), graphsim_server.base_url, BREAKER_STORAGE_OUTAGE=policy)
    app = start_app(env)
    user = graphsim.users()[3]

    answer = app.get(f"/api/users/{user['id']}")
    assert answer.status_code == status, answer.text
    if x_cache is not None:
        assert answer.headers["X-Cache"] == x_cache
        assert answer.json()["id"] == user["id"]
    else:
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["error"]["code"] == "circuit_open"

    health = app.get("/api/health")
    assert health.status_code == 503
    assert health.json()["checks"]["table_storage"]["ok"] is False
    assert "internal_error" not in app.host.output
