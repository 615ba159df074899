"""The whole app through the local harness, on the session's Azurite and Graph simulator."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devtools.graphsim.client import SimControl
from tests.fixtures.funchost import FuncHostLauncher, FuncHostProcess
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningApp:
    """The app under the harness plus an HTTP client that sends the function key."""

    host: FuncHostProcess
    client: httpx.Client
    env: dict[str, str]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]


def app_env(storage_connection_string: str, graph_base_url: str, **overrides: str) -> dict[str, str]:
    """Settings of one app instance: its own tables, the simulator, short retry budgets for tests."""
    env = {
        "AzureWebJobsStorage": storage_connection_string,
        "STORAGE_TABLE_PREFIX": "e" + uuid.uuid4().hex[:12],
        "GRAPH_BASE_URL": graph_base_url,
        "GRAPH_AUTH_MODE": "static_token",
        "GRAPH_STATIC_TOKEN": GRAPHSIM_TOKEN,
        "RETRY_BUDGET_SECONDS": "3",
        "RETRY_MAX_RETRY_AFTER_SECONDS": "2",
        "LOG_LEVEL": "INFO",
        # Timers: renewal runs at start (nothing desired unless a test says so), then yearly; no sweeps.
        "SUBSCRIPTION_RENEWAL_SCHEDULE": "0 0 0 1 1 *",
        "MAINTENANCE_SCHEDULE": "0 0 0 1 1 *",
        "MIRROR_SCHEDULE": "0 0 0 1 1 *",  # runs at start (run_on_startup), then yearly
    }
    env.update(overrides)
    return env


StartApp = Callable[..., RunningApp]
APP_QUEUES = ("graph-notifications", "graph-lifecycle", "graph-events", "mirror-rounds", "graph-eventhub")


def clear_app_queues(connection_string: str) -> None:
    """Empty the app's queues (and their poison queues): a message a previous test left for redelivery
    must not be processed by this test's app (queue names are fixed, the Azurite is shared)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueServiceClient

    with QueueServiceClient.from_connection_string(connection_string) as service:
        for name in APP_QUEUES + tuple(f"{q}-poison" for q in APP_QUEUES):
            with contextlib.suppress(ResourceNotFoundError):
                service.get_queue_client(name).clear_messages()


@pytest.fixture(name="start_app")
def _start_app(
    funchost_factory: FuncHostLauncher,
    storage_connection_string: str,
    graphsim_server: GraphSimServer,
    graphsim: SimControl,
) -> Iterator[StartApp]:
    """Start the real function_app under the harness (any number of instances); settings may be overridden."""
    clients: list[httpx.Client] = []

    def start(env: Mapping[str, str] | None = None, *, port: int | None = None, **overrides: str) -> RunningApp:
        merged = env or app_env(storage_connection_string, graphsim_server.base_url, **overrides)
        if not clients:
            clear_app_queues(merged["AzureWebJobsStorage"])
        host = funchost_factory(ROOT, merged, port=port)
        client = httpx.Client(base_url=host.base_url, headers={"x-functions-key": host.function_key}, timeout=30)
        clients.append(client)
        return RunningApp(host, client, dict(merged))

    yield start
    for client in clients:
        client.close()


@pytest.fixture(name="app")
def _app(start_app: StartApp) -> RunningApp:
    """One app instance with default test settings."""
    return start_app()
