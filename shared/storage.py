"""Table and queue access shared by every component: safe keys, tables created once per process.

Table keys must not contain ``/ \\ # ?`` or control characters and are limited to 1 KiB, so any key
derived from user or Graph input goes through ``safe_key`` (readable when harmless, hashed otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient, TableServiceClient
    from azure.storage.queue.aio import QueueClient, QueueServiceClient

# A queue message may hold 64 KiB; our messages are base64 text (4 characters per 3 bytes).
QUEUE_MESSAGE_MAX_BYTES = 64 * 1024
QUEUE_MESSAGE_MAX_TEXT_BYTES = QUEUE_MESSAGE_MAX_BYTES // 4 * 3

_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f%]")
MAX_READABLE_KEY = 200


def hashed_key(text: str) -> str:
    """A fixed-length key (64 hex chars) for any text: collision-free in practice, always valid."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def safe_key(text: str) -> str:
    """``text`` itself when it is short and has no forbidden characters, else ``h-`` + its hash.

    The prefix keeps the two spaces apart: no readable key starts with ``h-`` and 64 hex digits.
    """
    if len(text) <= MAX_READABLE_KEY and text and not _UNSAFE.search(text) and not text.startswith("h-"):
        return text
    return "h-" + hashed_key(text)


class Tables:
    """Hands out table clients by short name (``cache`` → ``<prefix>cache``), creating each table once."""

    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self._service = service
        self._prefix = prefix
        self._ready: dict[str, TableClient] = {}
        self._lock = asyncio.Lock()

    def name(self, short_name: str) -> str:
        return f"{self._prefix}{short_name}"

    async def get(self, short_name: str) -> TableClient:
        """The table's client; the first call per process creates the table if it does not exist."""
        client = self._ready.get(short_name)
        if client is not None:
            return client
        async with self._lock:
            if short_name not in self._ready:
                await self._service.create_table_if_not_exists(self.name(short_name))
                self._ready[short_name] = self._service.get_table_client(self.name(short_name))
        return self._ready[short_name]


class Queues:
    """Hands out queue clients by name, creating each queue once per process.

    Message text is base64-encoded on send and decoded on receive, as queue triggers expect it
    (host.json ``messageEncoding``). The policies must be given per queue client: a queue client made
    by ``QueueServiceClient.get_queue_client`` does not inherit the service client's.
    """

    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._ready: dict[str, QueueClient] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> QueueClient:
        client = self._ready.get(name)
        if client is not None:
            return client
        async with self._lock:
            if name not in self._ready:
                from azure.core.exceptions import ResourceExistsError
                from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

                queue = self._service.get_queue_client(
                    name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
                )
                with contextlib.suppress(ResourceExistsError):
                    await queue.create_queue()
                self._ready[name] = queue
        return self._ready[name]
