"""The wiring of the directory mirror (part of the composition root, split from ``shared/wiring.py``).

The mirror is on when ``GRAPH_SUBSCRIPTIONS`` subscribes to ``users``. Then users notifications (and the
subscription catch-up's users events) become signals through ``notification_dispatcher()``, rounds are
run by the ``mirror-rounds`` queue and the safety-net timer, and the API reads users from the mirror.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.container import Service
from shared.wiring import DEDUPE, DISPATCHER, QUEUES, TABLES, delta_reader, registry, settings

if TYPE_CHECKING:
    from shared.events.dispatch import ExactlyOnceDispatcher
    from shared.events.model import Event
    from shared.mirror.coordinator import MirrorCoordinator
    from shared.mirror.reads import MirrorReader
    from shared.mirror.store import MirrorStore


def mirrored() -> bool:
    """Whether the directory is mirrored: ``users`` is a desired subscription."""
    from shared.subscriptions.desired import parse_desired

    return any(d.spec.kind == "users" for d in parse_desired(settings().graph_subscriptions))


def sweep_tombstones() -> dict[str, Callable[[], Awaitable[int]]]:
    """The sweeper of the mirror's old tombstones, when the directory is mirrored (for the sweep timer)."""
    if not mirrored():
        return {}

    async def sweep() -> int:
        from shared.mirror.store import TOMBSTONE_RETENTION
        from shared.subscriptions.clock import utcnow

        store = await registry.get(MIRROR_STORE)
        return await store.sweep_tombstones(utcnow() - TOMBSTONE_RETENTION)

    return {"mirror tombstones": sweep}


def publisher(dispatcher: ExactlyOnceDispatcher) -> Callable[[Event], Awaitable[None]]:
    """Publish through the deduplicating dispatcher; a handler left to run fails the call (it is retried)."""
    from shared.errors import TransientError

    async def publish(event: Event) -> None:
        result = await dispatcher.dispatch(event)
        if result.failed:
            raise TransientError(f"handlers {', '.join(result.failed)} failed for {event.type}", service="events")

    return publish


async def _make_store() -> MirrorStore:
    from shared.mirror.store import MirrorStore

    return MirrorStore(await registry.get(TABLES))


async def _make_coordinator() -> MirrorCoordinator:
    from shared.mirror.coordinator import CoordinatorConfig, MirrorCoordinator, QueueRounds
    from shared.mirror.sync import MirrorSync
    from shared.subscriptions.leases import LeaseStore

    current = settings()
    store, dispatcher = await registry.get(MIRROR_STORE), await registry.get(DISPATCHER)
    sync = MirrorSync(await delta_reader(), store, publisher(dispatcher))
    config = CoordinatorConfig(
        debounce=timedelta(seconds=current.mirror_debounce_seconds),
        safety_interval=timedelta(seconds=current.mirror_safety_interval_seconds),
    )
    leases = LeaseStore(await registry.get(TABLES))
    return MirrorCoordinator(store, sync, leases, QueueRounds(await registry.get(QUEUES)), config=config)


async def _make_reader() -> MirrorReader:
    from shared.mirror.reads import MirrorReader

    return MirrorReader(await registry.get(MIRROR_STORE), max_staleness=settings().mirror_max_staleness_seconds)


async def _make_signaling_dispatcher() -> ExactlyOnceDispatcher:
    from shared.mirror.signals import SignalingDispatcher

    async def signal() -> None:
        await (await registry.get(MIRROR)).signal()

    return SignalingDispatcher((await registry.get(DISPATCHER)).bus, await registry.get(DEDUPE), signal)


MIRROR_STORE: Service[MirrorStore] = Service("mirror_store", _make_store)
MIRROR: Service[MirrorCoordinator] = Service("mirror", _make_coordinator)
MIRROR_READER: Service[MirrorReader] = Service("mirror_reader", _make_reader)
SIGNALING_DISPATCHER: Service[ExactlyOnceDispatcher] = Service("signaling_dispatcher", _make_signaling_dispatcher)


async def notification_dispatcher() -> ExactlyOnceDispatcher:
    """What notifications and catch-ups dispatch through: users become mirror signals when mirrored."""
    return await registry.get(SIGNALING_DISPATCHER if mirrored() else DISPATCHER)


async def mirror_reader() -> MirrorReader | None:
    """The API's mirror reads, when the directory is mirrored."""
    if not mirrored():
        return None
    return await registry.get(MIRROR_READER)
