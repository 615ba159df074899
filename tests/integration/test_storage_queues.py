"""What the app enqueues is what queue triggers can read: base64 text (host.json messageEncoding)."""

from __future__ import annotations

import base64

from azure.storage.queue.aio import QueueServiceClient

from shared.storage import Queues


async def test_queue_messages_are_base64_on_the_wire(storage_connection_string: str, unique_name: str) -> None:
    """A message sent through Queues is stored base64-encoded and read back decoded."""
    async with QueueServiceClient.from_connection_string(storage_connection_string) as service:
        queue = await Queues(service).get(unique_name)
        await queue.send_message('{"value": ["é"]}')
        raw = service.get_queue_client(unique_name)  # no decode policy: sees the stored text
        stored = [m.content for m in await raw.peek_messages(max_messages=1)]
        assert base64.b64decode(stored[0]).decode() == '{"value": ["é"]}'
        decoded = [m.content async for m in queue.receive_messages()]
        assert decoded == ['{"value": ["é"]}']
