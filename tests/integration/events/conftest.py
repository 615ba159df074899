"""Storage clients on the session's Azurite, built like shared/wiring.py builds them, with per-test names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from shared.storage import Queues, Tables


@dataclass(frozen=True)
class QueueNames:
    """This test's own queues (Azurite is shared by the whole session)."""

    notifications: str
    lifecycle: str
    events: str


@pytest.fixture(name="table_service")
async def _table_service(storage_connection_string: str) -> AsyncIterator[TableServiceClient]:
    client = TableServiceClient.from_connection_string(storage_connection_string)
    yield client
    await client.close()


@pytest.fixture(name="queue_service")
async def _queue_service(storage_connection_string: str) -> AsyncIterator[QueueServiceClient]:
    """Base64 text like the app's client (host.json messageEncoding is base64)."""
    client = QueueServiceClient.from_connection_string(
        storage_connection_string,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    yield client
    await client.close()


@pytest.fixture(name="tables")
def _tables(table_service: TableServiceClient, unique_name: str) -> Tables:
    """Tables prefixed with this test's unique name."""
    return Tables(table_service, unique_name)


@pytest.fixture(name="queues")
def _queues(queue_service: QueueServiceClient) -> Queues:
    return Queues(queue_service)


@pytest.fixture(name="names")
def _names(unique_name: str) -> QueueNames:
    return QueueNames(f"{unique_name}-notifications", f"{unique_name}-lifecycle", f"{unique_name}-events")


async def drain(queue: QueueClient) -> list[str]:
    """Every message now in ``queue`` (received and deleted)."""
    texts: list[str] = []
    while True:
        batch = [m async for m in queue.receive_messages(max_messages=32, messages_per_page=32)]
        if not batch:
            return texts
        for message in batch:
            texts.append(message.content)
            await queue.delete_message(message)
