"""The webhook against Azurite: registry lookups, queue persistence, and a storage outage."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueServiceClient

from devtools.azurite import connection_string, free_port
from shared.errors import TransientError
from shared.events.lifecycle import LifecycleProcessor, LoggingLifecycleReactions
from shared.events.notifications import parse_envelope
from shared.events.webhook import NotificationWebhook, WebhookConfig
from shared.secret import Secret
from shared.storage import Queues, Tables
from shared.subscriptions.records import RegistryConfig, SubscriptionRecord, SubscriptionRegistry
from tests.integration.events.conftest import QueueNames, drain
from tests.unit.events import samples
from tests.unit.events.fakes import FakeRegistry

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def record(subscription_id: str = samples.SUBSCRIPTION, secret: str = samples.SECRET) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=subscription_id,
        resource="users",
        change_types=("updated", "deleted"),
        notification_url="https://example.test/api/notifications",
        lifecycle_url="https://example.test/api/notifications/lifecycle",
        client_state=Secret(secret),
        expiration=NOW + timedelta(days=20),
        created_at=NOW,
    )


@pytest.fixture(name="registry")
async def _registry(tables: Tables) -> SubscriptionRegistry:
    """A registry holding the sample subscription."""
    registry = SubscriptionRegistry(tables)
    await registry.upsert(record())
    return registry


@pytest.fixture(name="webhook")
def _webhook(registry: SubscriptionRegistry, queues: Queues, names: QueueNames) -> NotificationWebhook:
    return NotificationWebhook(
        registry, queues, WebhookConfig(notifications_queue=names.notifications, lifecycle_queue=names.lifecycle)
    )


async def test_registry_round_trips_records_and_hides_the_secret(tables: Tables) -> None:
    """upsert → get/list give the record back; delete removes it; repr never shows the secret."""
    registry = SubscriptionRegistry(tables)
    await registry.upsert(record())
    stored = await registry.get(samples.SUBSCRIPTION)
    assert stored == record()
    assert stored is not None
    assert stored.client_state.reveal() == samples.SECRET
    assert samples.SECRET not in repr(stored)
    assert [r.id for r in await registry.list_all()] == [samples.SUBSCRIPTION]
    await registry.delete(samples.SUBSCRIPTION)
    assert await registry.get(samples.SUBSCRIPTION) is None
    assert await registry.client_state(samples.SUBSCRIPTION) is None


async def test_webhook_lookups_are_served_from_the_process_cache(tables: Tables) -> None:
    """After the first lookup the secret comes from memory (a row deleted behind its back is still
    served until the cache expires), so a hot webhook does no table read."""
    now = [0.0]
    registry = SubscriptionRegistry(tables, RegistryConfig(cache_seconds=30), clock=lambda: now[0])
    writer = SubscriptionRegistry(tables)
    await writer.upsert(record())
    assert (await registry.client_state(samples.SUBSCRIPTION)) is not None
    await writer.delete(samples.SUBSCRIPTION)
    assert (await registry.client_state(samples.SUBSCRIPTION)) is not None
    now[0] = 31.0
    assert (await registry.client_state(samples.SUBSCRIPTION)) is None


async def test_webhook_enqueues_accepted_items_and_drops_bad_client_states(
    webhook: NotificationWebhook, queues: Queues, names: QueueNames
) -> None:
    """Good items reach graph-notifications, lifecycle items graph-lifecycle; wrong/missing secrets are counted."""
    result = await webhook.accept(
        samples.body(
            samples.user_change(),
            samples.message_change(),
            samples.user_change(secret="wrong"),
            samples.user_change(secret=None),
            samples.lifecycle("subscriptionRemoved"),
        )
    )
    assert (result.accepted, result.lifecycle, result.messages) == (3, 1, 2)
    assert result.dropped == {"client_state_mismatch": 2}
    changes = await drain(await queues.get(names.notifications))
    lifecycle = await drain(await queues.get(names.lifecycle))
    assert [len(parse_envelope(t).items) for t in changes] == [2]
    assert [i["lifecycleEvent"] for t in lifecycle for i in parse_envelope(t).items] == ["subscriptionRemoved"]


async def test_lifecycle_items_flow_from_webhook_to_reactions(
    webhook: NotificationWebhook, queues: Queues, names: QueueNames
) -> None:
    """A lifecycle POST is queued and the lifecycle processor hands each event to its reaction."""
    await webhook.accept(samples.body(samples.lifecycle("missed"), samples.lifecycle("reauthorizationRequired")))
    reactions = LoggingLifecycleReactions()
    processor = LifecycleProcessor(reactions, queues)
    for text in await drain(await queues.get(names.lifecycle)):
        await processor.process(text.encode(), dequeue_count=1)
    assert dict(reactions.counts) == {"missed": 1, "reauthorizationRequired": 1}


async def test_unreachable_storage_makes_accept_fail_transiently(storage_connection_string: str) -> None:
    """With the queue service down, accept raises TransientError (→ 503) quickly: nothing is claimed."""
    port = free_port()
    dead = QueueServiceClient.from_connection_string(
        connection_string("127.0.0.1", port, port, port),
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
        retry_total=0,
        connection_timeout=1,
    )
    webhook = NotificationWebhook(FakeRegistry({samples.SUBSCRIPTION: samples.SECRET}), Queues(dead))
    started = time.monotonic()
    try:
        with pytest.raises(TransientError):
            await webhook.accept(samples.body(samples.user_change()))
    finally:
        await dead.close()
    assert time.monotonic() - started < 3
