"""Rich notifications through the app's own wiring (RICH_NOTIFICATIONS on) and real parts: the simulator (a
process) encrypts and signs, a receiver captures Graph's POST, the app's webhook (built by shared/wiring.py)
fetches the simulator's signing keys over HTTP, checks the tokens and persists to Azurite; the app's processor
decrypts and forwards the event with its data to graph-events, or poisons an item that does not decrypt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueServiceClient
from msgraph.generated.models.subscription import Subscription

from devtools.encryption_certificate import generate_pem
from devtools.graphsim.client import SimControl
from devtools.graphsim.seed import APPLICATION_ID
from shared.events.outbound import decode_events
from shared.names import EVENTS_QUEUE, NOTIFICATIONS_QUEUE
from shared.richdata.keyring import load_key
from shared.secret import Secret
from shared.subscriptions.records import SubscriptionRecord
from shared.wiring import PROCESSOR, QUEUE_SERVICE, QUEUES, SUBSCRIPTION_REGISTRY, WEBHOOK, registry
from tests.fixtures.graphsim import GraphSimServer
from tests.integration.graphsim.receiver import Receiver

pytestmark = pytest.mark.integration
CLIENT_STATE = "rich-client-state"
PEM = generate_pem()
KEY = load_key("cert-it", PEM)


@pytest.fixture(name="rich_env")
def _rich_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, graphsim: SimControl) -> dict[str, str]:
    env = {
        "RICH_NOTIFICATIONS": "true",
        "RICH_NOTIFICATIONS_CERTIFICATE": PEM.decode(),
        "RICH_NOTIFICATIONS_CERTIFICATE_ID": KEY.certificate_id,
        "RICH_NOTIFICATIONS_AUDIENCE": APPLICATION_ID,
        "RICH_NOTIFICATIONS_OPENID_CONFIGURATION": graphsim.openid_configuration_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**app_env, **env}


async def subscribe(graph_client: Any, receiver: Receiver, user_id: str) -> str:
    """A rich subscription at the simulator, and its record (with the clientState) in the app's registry."""
    created = await graph_client.subscriptions.post(
        Subscription(
            change_type="created,updated",
            notification_url=receiver.url("/notify"),
            resource=f"users/{user_id}/messages?$select=subject,bodyPreview",
            expiration_date_time=datetime.now(UTC) + timedelta(hours=1),
            client_state=CLIENT_STATE,
            include_resource_data=True,
            encryption_certificate=KEY.encryption_certificate,
            encryption_certificate_id=KEY.certificate_id,
        )
    )
    now = datetime.now(UTC)
    record = SubscriptionRecord(
        id=created.id,
        resource=created.resource,
        change_types=("created", "updated"),
        notification_url=receiver.url("/notify"),
        lifecycle_url=None,
        client_state=Secret(CLIENT_STATE),
        expiration=now + timedelta(hours=1),
        created_at=now,
    )
    await (await registry.get(SUBSCRIPTION_REGISTRY)).upsert(record)
    return str(created.id)


async def mine(queue_name: str, subscription_id: str) -> list[str]:
    """This test's messages in a shared queue (received and deleted); others' are left for their owners."""
    service: QueueServiceClient = await registry.get(QUEUE_SERVICE)  # the app's own client
    await (await registry.get(QUEUES)).get(queue_name)  # created (a poison queue only exists once written)
    queue = service.get_queue_client(
        queue_name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
    )
    found: list[str] = []
    for _ in range(20):
        batch = [m async for m in queue.receive_messages(max_messages=32, visibility_timeout=2)]
        if not batch:
            break
        for message in batch:
            if subscription_id in message.content:
                found.append(message.content)
                await queue.delete_message(message)
    return found


async def deliver(graphsim: SimControl, receiver: Receiver, user_id: str, subject: str) -> bytes:
    receiver.payloads.clear()
    graphsim.create_message(user_id, subject=subject)
    graphsim.wait_deliveries_idle()
    [post] = receiver.posts()
    return json.dumps(post).encode()


async def test_a_created_message_reaches_graph_events_with_its_data(
    rich_env: dict[str, str],
    graph_client: Any,
    graphsim: SimControl,
    graphsim_server: GraphSimServer,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With FORWARD_ENRICH on and Graph reachable, the event still costs no Graph call: it brought its data."""
    monkeypatch.setenv("FORWARD_ENRICH", "true")
    monkeypatch.setenv("GRAPH_BASE_URL", graphsim_server.base_url)
    user_id = graphsim.users()[0]["id"]
    subscription_id = await subscribe(graph_client, receiver, user_id)
    body = await deliver(graphsim, receiver, user_id, "Quarterly numbers")
    graphsim.clear_requests()

    result = await (await registry.get(WEBHOOK)).accept(body)
    assert (result.accepted, result.dropped) == (1, {})
    [queued] = await mine(NOTIFICATIONS_QUEUE, subscription_id)
    assert "Quarterly" not in queued  # encrypted at rest in the queue
    processed = await (await registry.get(PROCESSOR)).process(queued)
    assert processed.published == 1

    [event] = [e for text in await mine(EVENTS_QUEUE, subscription_id) for e in decode_events(text)]
    assert event["type"] == "messages.created"
    assert event["data"]["subject"] == "Quarterly numbers"
    assert set(event["data"]) == {"subject", "bodyPreview"}
    assert graphsim.requests(path_regex="^/users") == []  # no Graph call for the message
    assert graphsim.richdata()["fetches"] == {"configuration": 1, "keys": 1}


async def test_a_post_with_a_wrong_audience_is_acknowledged_and_dropped(
    rich_env: dict[str, str], graph_client: Any, graphsim: SimControl, receiver: Receiver
) -> None:
    user_id = graphsim.users()[0]["id"]
    subscription_id = await subscribe(graph_client, receiver, user_id)
    graphsim.add_rich_fault("wrong_audience")
    body = await deliver(graphsim, receiver, user_id, "spoofed")
    result = await (await registry.get(WEBHOOK)).accept(body)
    assert (result.accepted, result.dropped) == (0, {"unverified:token_wrong_audience": 1})
    assert result.to_dict()["dropped"] == {"refused": 1}
    assert await mine(NOTIFICATIONS_QUEUE, subscription_id) == []


async def test_tampered_data_is_poisoned_not_published(
    rich_env: dict[str, str], graph_client: Any, graphsim: SimControl, receiver: Receiver
) -> None:
    user_id = graphsim.users()[0]["id"]
    subscription_id = await subscribe(graph_client, receiver, user_id)
    graphsim.add_rich_fault("tampered_data")
    body = await deliver(graphsim, receiver, user_id, "tampered")
    assert (await (await registry.get(WEBHOOK)).accept(body)).accepted == 1  # the POST itself is Graph's
    [queued] = await mine(NOTIFICATIONS_QUEUE, subscription_id)
    processed = await (await registry.get(PROCESSOR)).process(queued)
    assert (processed.published, processed.poisoned) == (0, 1)
    [parked] = await mine(NOTIFICATIONS_QUEUE + "-poison", subscription_id)
    assert "bad_data_signature" in parked
    assert "tampered" not in parked
    assert await mine(EVENTS_QUEUE, subscription_id) == []
