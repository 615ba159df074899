"""A mirror stack per test: the real gateway on the simulator, the mirror and dedupe tables and the round
queue on Azurite, the exactly-once dispatcher with a recording once-handler standing in for the forwarder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueServiceClient

from shared.events.bus import EventBus
from shared.events.dedupe import DedupeStore
from shared.events.dispatch import ExactlyOnceDispatcher
from shared.events.model import Event
from shared.graph.delta import DeltaReader
from shared.graph.gateway import GraphGateway
from shared.mirror.coordinator import CoordinatorConfig, MirrorCoordinator, QueueRounds
from shared.mirror.reads import MirrorReader
from shared.mirror.signals import SignalingDispatcher
from shared.mirror.store import MirrorStore
from shared.mirror.sync import MirrorSync
from shared.storage import Queues, Tables
from shared.subscriptions.leases import LeaseStore
from tests.integration.subscriptions.conftest import _gateway, _sim_clock, _tables

__all__ = ["_gateway", "_sim_clock", "_tables"]


@dataclass
class Forwarded:
    """Events that reached the once-handler (what ``graph-events`` would receive), in order."""

    events: list[Event] = field(default_factory=list)

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


@dataclass
class MirrorStack:
    store: MirrorStore
    sync: MirrorSync
    coordinator: MirrorCoordinator
    reader: MirrorReader
    dispatcher: ExactlyOnceDispatcher
    signaling: SignalingDispatcher
    forwarded: Forwarded
    queues: Queues
    queue_name: str
    clock: Any
    pace_hook: list[Callable[[], Awaitable[None]]]


@pytest.fixture(name="queues")
async def _queues(storage_connection_string: str) -> AsyncIterator[Queues]:
    client = QueueServiceClient.from_connection_string(
        storage_connection_string,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    yield Queues(client)
    await client.close()


@pytest.fixture(name="mirror")
def _mirror(gateway: GraphGateway, tables: Tables, queues: Queues, sim_clock: Any, unique_name: str) -> MirrorStack:
    forwarded = Forwarded()
    bus = EventBus(default_timeout=10.0)
    bus.subscribe("forward", forwarded, ["*"])
    dispatcher = ExactlyOnceDispatcher(bus, DedupeStore(tables))

    async def publish(event: Event) -> None:
        result = await dispatcher.dispatch(event)
        assert not result.failed

    hooks: list[Callable[[], Awaitable[None]]] = []

    async def pace() -> None:
        for hook in hooks:
            await hook()

    store = MirrorStore(tables)
    sync = MirrorSync(DeltaReader(gateway, pace=pace), store, publish, clock=sim_clock)
    queue_name = f"{unique_name}-rounds"
    coordinator = MirrorCoordinator(
        store,
        sync,
        LeaseStore(tables, sim_clock),
        QueueRounds(queues, queue_name),
        clock=sim_clock,
        config=CoordinatorConfig(debounce=timedelta(seconds=1)),
    )
    reader = MirrorReader(store, max_staleness=600, state_ttl=0, clock=sim_clock)

    async def signal() -> None:
        await coordinator.signal()

    signaling = SignalingDispatcher(bus, DedupeStore(tables), signal)
    return MirrorStack(
        store, sync, coordinator, reader, dispatcher, signaling, forwarded, queues, queue_name, sim_clock, hooks
    )
