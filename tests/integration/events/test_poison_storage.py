"""Poison-queue operations on Azurite: list without removing, replay back to the original queue."""

from __future__ import annotations

from shared.events.poison import peek_poison, poison_queue_name, replay_poison, write_poison
from shared.storage import Queues
from tests.integration.events.conftest import QueueNames, drain


async def test_peek_lists_our_and_the_hosts_poison_messages(queues: Queues, names: QueueNames) -> None:
    """Our wrapped entries show their reason; an entry the host moved as-is shows none; peeking removes nothing."""
    await write_poison(queues, names.notifications, "original-1", "not valid JSON")
    await (await queues.get(poison_queue_name(names.notifications))).send_message("moved-by-host")
    listed = await peek_poison(queues, names.notifications)
    assert [(m.original, m.reason) for m in listed] == [("original-1", "not valid JSON"), ("moved-by-host", None)]
    assert len(await peek_poison(queues, names.notifications)) == 2


async def test_replay_moves_originals_back_and_empties_the_poison_queue(queues: Queues, names: QueueNames) -> None:
    """Replay sends each original text to its queue, then deletes it from the poison queue."""
    for i in range(40):  # more than one receive batch of 32
        await write_poison(queues, names.notifications, f"m{i}", "handler bug")
    result = await replay_poison(queues, names.notifications)
    assert (result.replayed, result.failed) == (40, 0)
    assert sorted(await drain(await queues.get(names.notifications))) == sorted(f"m{i}" for i in range(40))
    assert await peek_poison(queues, names.notifications) == []


async def test_replay_respects_its_limit(queues: Queues, names: QueueNames) -> None:
    """A limited replay moves that many and leaves the rest parked."""
    for i in range(5):
        await write_poison(queues, names.notifications, f"m{i}", "handler bug")
    assert (await replay_poison(queues, names.notifications, limit=3)).replayed == 3
    assert len(await drain(await queues.get(names.notifications))) == 3
