"""Helpers for notification tests: subscribe the app in the simulator and read what it forwarded."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.events.outbound import decode_events
from shared.secret import Secret
from shared.storage import Queues, Tables
from shared.subscriptions.records import SubscriptionRecord, SubscriptionRegistry
from tests.e2e.conftest import RunningApp
from tests.fixtures.graphsim import GRAPHSIM_TOKEN

# Something to do with the app's tables and queues, and a way to run it (with whatever credentials the test has).
StorageAction = Callable[[Tables, Queues], Awaitable[Any]]
StorageAccess = Callable[[StorageAction], Any]


def connection_string_storage(app: RunningApp) -> StorageAccess:
    """Run storage actions with the app's own connection string (the default for apps on Azurite)."""
    return lambda action: asyncio.run(_with_storage(app, action))


def subscribe(
    app: RunningApp, graph_base_url: str, resource: str, change_type: str, storage: StorageAccess | None = None
) -> tuple[str, str]:
    """Create a Graph subscription to the app's webhook and record it in the app's registry.

    (What the subscription service does itself; done by hand here so the pipeline is tested alone.)
    ``storage`` reaches the app's tables (default: its connection string; identity-based apps pass their own).
    Returns the subscription id and its clientState.
    """
    client_state = secrets.token_urlsafe(24)
    body = {
        "changeType": change_type,
        "resource": resource,
        "notificationUrl": f"{app.host.base_url}/api/notifications",
        "lifecycleNotificationUrl": f"{app.host.base_url}/api/notifications/lifecycle",
        "clientState": client_state,
        "expirationDateTime": (datetime.now(UTC) + timedelta(hours=24)).isoformat(),
    }
    created = httpx.post(
        f"{graph_base_url}/subscriptions", json=body, headers={"Authorization": f"Bearer {GRAPHSIM_TOKEN}"}, timeout=30
    )
    created.raise_for_status()
    subscription = created.json()
    record = SubscriptionRecord(
        id=subscription["id"],
        resource=resource,
        change_types=tuple(change_type.split(",")),
        notification_url=body["notificationUrl"],
        client_state=Secret(client_state),
        expiration=datetime.fromisoformat(subscription["expirationDateTime"].replace("Z", "+00:00")),
        created_at=datetime.now(UTC),
        lifecycle_url=body["lifecycleNotificationUrl"],
    )
    (storage or connection_string_storage(app))(lambda tables, _: SubscriptionRegistry(tables).upsert(record))
    return subscription["id"], client_state


async def _with_storage(app: RunningApp, action: Any) -> Any:
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.queue.aio import QueueServiceClient

    connection = app.env["AzureWebJobsStorage"]
    async with (
        TableServiceClient.from_connection_string(connection) as table_service,
        QueueServiceClient.from_connection_string(connection) as queue_service,
    ):
        return await action(Tables(table_service, app.env["STORAGE_TABLE_PREFIX"]), Queues(queue_service))


def drain_queue(app: RunningApp, queue: str) -> list[str]:
    """Take (receive and delete) every message now in ``queue``."""

    async def take(_: Tables, queues: Queues) -> list[str]:
        client = await queues.get(queue)
        found: list[str] = []
        async for message in client.receive_messages(messages_per_page=32, visibility_timeout=30):
            found.append(message.content)
            await client.delete_message(message)
        return found

    result: list[str] = asyncio.run(_with_storage(app, take))
    return result


def queue_length(app: RunningApp, queue: str) -> int:
    """Messages now in ``queue`` (Azurite's count is exact), without taking them."""

    async def count(_: Tables, queues: Queues) -> int:
        properties = await (await queues.get(queue)).get_queue_properties()
        return int(properties.approximate_message_count or 0)

    result: int = asyncio.run(_with_storage(app, count))
    return result


def send_to_queue(app: RunningApp, queue: str, text: str) -> None:
    async def send(_: Tables, queues: Queues) -> None:
        await (await queues.get(queue)).send_message(text)

    asyncio.run(_with_storage(app, send))


class EventSink:
    """Collects what the app forwarded to ``graph-events`` (draining the queue as it reads)."""

    def __init__(self, app: RunningApp) -> None:
        self._app = app
        self.events: list[dict[str, Any]] = []

    def wait_for(self, count: int, timeout: float = 30.0, settle: float = 0.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events arrived, then ``settle`` seconds more for any extra."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            self.events += [e for text in drain_queue(self._app, "graph-events") for e in decode_events(text)]
            time.sleep(0.3)
        if settle:
            time.sleep(settle)
            self.events += [e for text in drain_queue(self._app, "graph-events") for e in decode_events(text)]
        return self.events

    def wait_for_matching(
        self, message_ids: set[str], timeout: float = 30.0, settle: float = 1.0
    ) -> list[dict[str, Any]]:
        """Wait until an event names each of ``message_ids`` (other events are kept too), then ``settle``
        seconds more so a duplicate has time to show up."""
        deadline = time.monotonic() + timeout
        while not message_ids <= {e.get("message_id") for e in self.events} and time.monotonic() < deadline:
            self.events += [e for text in drain_queue(self._app, "graph-events") for e in decode_events(text)]
            time.sleep(0.3)
        return self.wait_for(0, settle=settle)
