"""The whole app on identity-based storage: the harness and the app reach Azurite (OAuth over HTTPS) with
the real ``ManagedIdentityCredential``, whose tokens come from a local App Service identity endpoint.

Settings carry no key: ``AzureWebJobsStorage__*ServiceUri``, ``__credential=managedidentity`` and a
user-assigned identity's ``__clientId``, as infra sets them on Azure. The queue trigger (the harness's
listener) and the Table cache (a second instance's read is an L2 hit) both go through the identity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devtools.graphsim.client import SimControl
from devtools.identity import IdentityEndpoint
from shared.events.outbound import decode_events
from shared.storage import Queues, Tables
from tests.e2e.conftest import ROOT, RunningApp, app_env
from tests.e2e.pipeline import subscribe
from tests.fixtures.funchost import FuncHostLauncher, FuncHostProcess
from tests.fixtures.graphsim import GraphSimServer
from tests.fixtures.identity import CLIENT_ID, OAuthStorage

T = TypeVar("T")
USER_ROUTE = "GET /users/{id}"


@pytest.fixture(name="endpoint")
def _endpoint() -> Iterator[IdentityEndpoint]:
    with IdentityEndpoint() as endpoint:
        yield endpoint


def _storage(oauth: OAuthStorage, prefix: str, action: Callable[[Tables, Queues], Awaitable[T]]) -> T:
    """Run ``action`` with the test's own clients (shared key over the same HTTPS; Azurite takes both)."""
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.queue.aio import QueueServiceClient

    async def run() -> T:
        cs, verify = oauth.azurite.connection_string, str(oauth.ca_file)
        async with (
            TableServiceClient.from_connection_string(cs, connection_verify=verify) as tables,
            QueueServiceClient.from_connection_string(cs, connection_verify=verify) as queues,
        ):
            return await action(Tables(tables, prefix), Queues(queues))

    return asyncio.run(run())


def _start(launcher: FuncHostLauncher, env: dict[str, str], tmp_path: Path) -> tuple[FuncHostProcess, httpx.Client]:
    host = launcher(ROOT, env, settings=tmp_path / "no-local-settings.json")
    client = httpx.Client(base_url=host.base_url, headers={"x-functions-key": host.function_key}, timeout=30)
    return host, client


def _forwarded_events(oauth: OAuthStorage, prefix: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Take what the app forwarded to graph-events until ``count`` arrived (or the time is up)."""

    async def take(_: Tables, queues: Queues) -> list[str]:
        client = await queues.get("graph-events")
        found: list[str] = []
        async for message in client.receive_messages(messages_per_page=32, visibility_timeout=30):
            found.append(message.content)
            await client.delete_message(message)
        return found

    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        events += [event for text in _storage(oauth, prefix, take) for event in decode_events(text)]
        time.sleep(0.3)
    return events


def test_app_runs_on_identity_based_storage(
    funchost_factory: FuncHostLauncher,
    oauth_storage: OAuthStorage,
    endpoint: IdentityEndpoint,
    graphsim_server: GraphSimServer,
    graphsim: SimControl,
    tmp_path: Path,
) -> None:
    """No storage key in the app's settings: the users API fills the Table cache (second instance: hit-l2),
    a notification is queued by the webhook, received by the harness's queue trigger and forwarded once;
    every token came from the identity endpoint for Storage and the user-assigned identity."""
    env = app_env("unused", graphsim_server.base_url, **oauth_storage.settings(), **endpoint.environment)
    del env["AzureWebJobsStorage"]
    env["SSL_CERT_FILE"] = str(oauth_storage.ca_file)  # this subprocess trusts the test's certificate
    prefix = env["STORAGE_TABLE_PREFIX"]
    _storage(oauth_storage, prefix, _clear_events)
    first, first_client = _start(funchost_factory, env, tmp_path)
    second, second_client = _start(funchost_factory, env, tmp_path)
    with first_client, second_client:
        health = first_client.get("/api/health")
        assert health.status_code == 200, health.text
        assert {name: check["ok"] for name, check in health.json()["checks"].items()} == {
            "table_storage": True,
            "queue_storage": True,
        }
        user = graphsim.users()[0]
        assert first_client.get(f"/api/users/{user['id']}").headers["X-Cache"] == "miss"
        assert second_client.get(f"/api/users/{user['id']}").headers["X-Cache"] == "hit-l2"
        assert graphsim.count(USER_ROUTE) == 1

        app = RunningApp(first, first_client, env)
        subscription_id, client_state = subscribe(
            app, graphsim_server.base_url, "users", "updated", lambda action: _storage(oauth_storage, prefix, action)
        )
        item = {
            "subscriptionId": subscription_id,
            "clientState": client_state,
            "changeType": "updated",
            "resource": f"Users/{user['id']}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": user["id"]},
            "tenantId": "00000000-0000-0000-0000-0000000000aa",
        }
        accepted = first_client.post("/api/notifications", json={"value": [item]})
        assert accepted.status_code == 202, accepted.text
        events = _forwarded_events(oauth_storage, prefix, 1)
        assert [e["type"] for e in events] == ["users.updated"]
        assert _forwarded_events(oauth_storage, prefix, 2, timeout=2.0) == [], "forwarded more than once"
    assert endpoint.requests, "no token was fetched from the identity endpoint"
    assert {(r["resource"], r.get("client_id")) for r in endpoint.requests} == {
        ("https://storage.azure.com", CLIENT_ID)
    }
    outputs = first.output + second.output
    assert "AuthenticationFailed" not in outputs
    assert "Executed 'Functions.process_notifications' (Succeeded" in outputs  # the queue trigger ran


async def _clear_events(_: Tables, queues: Queues) -> None:
    import contextlib

    from azure.core.exceptions import ResourceNotFoundError

    for name in ("graph-notifications", "graph-events"):
        with contextlib.suppress(ResourceNotFoundError):
            await (await queues.get(name)).clear_messages()
