"""Rich notifications in the pipeline: the webhook checks a POST's tokens before persisting anything and
carries encryptedContent only when it does; the processor decrypts each item into the event's data and
poisons one that does not decrypt. Real crypto (the simulator's Graph-side encryption), fake queues."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from devtools.encryption_certificate import generate_pem
from devtools.graphsim.rich_crypto import encrypt_resource
from shared.events.dispatch import DispatchResult, ExactlyOnceDispatcher
from shared.events.model import Event
from shared.events.notifications import encode_envelope, parse_envelope
from shared.events.processor import NotificationProcessor
from shared.events.webhook import NotificationWebhook, WebhookConfig
from shared.richdata.decrypt import decrypt_content
from shared.richdata.errors import SigningKeysUnavailableError, TokenExpiredError
from shared.richdata.keyring import DecryptionKey, KeyRing, load_key
from shared.storage import Queues
from tests.unit.events import samples
from tests.unit.events.fakes import FakeQueues, FakeRegistry

NOTIFY = WebhookConfig().notifications_queue
RESOURCE = {"subject": "hello", "bodyPreview": "first lines"}


@pytest.fixture(name="key", scope="module")
def _key() -> DecryptionKey:
    return load_key("cert-1", generate_pem())


def rich_item(key: DecryptionKey, **content: str) -> dict[str, Any]:
    encrypted = encrypt_resource(RESOURCE, key.certificate, key.certificate_id)
    return {**samples.message_change(), "encryptedContent": {**encrypted, **content}}


class Verifier:
    """Records what the webhook asked; raises ``error`` when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[int, Any]] = []

    async def __call__(self, items: list[Any], tokens: Any) -> None:
        self.calls.append((len(items), tokens))
        if self.error is not None:
            raise self.error


def webhook(queues: FakeQueues, verifier: Verifier | None) -> NotificationWebhook:
    registry = FakeRegistry({samples.SUBSCRIPTION: samples.SECRET})
    return NotificationWebhook(registry, queues, verify_post=verifier)  # type: ignore[arg-type]


def queued(queues: FakeQueues) -> list[dict[str, Any]]:
    return [item for text in queues.sent[NOTIFY] for item in parse_envelope(text).items]


async def test_a_verified_post_is_persisted_with_its_content_still_encrypted(key: DecryptionKey) -> None:
    queues, verifier = FakeQueues(), Verifier()
    item = rich_item(key)
    body = json.dumps({"value": [item, samples.message_change(message="basic")], "validationTokens": ["t1"]})
    result = await webhook(queues, verifier).accept(body.encode())
    assert (result.accepted, result.dropped) == (2, {})
    assert verifier.calls == [(2, ["t1"])]  # once per POST, with its tokens
    [rich, basic] = queued(queues)
    assert rich["encryptedContent"] == item["encryptedContent"]
    assert "hello" not in queues.sent[NOTIFY][0]
    assert "encryptedContent" not in basic


async def test_a_refused_post_keeps_nothing_and_says_only_refused(key: DecryptionKey) -> None:
    queues = FakeQueues()
    verifier = Verifier(TokenExpiredError("the token has expired"))
    body = json.dumps({"value": [rich_item(key), samples.message_change()], "validationTokens": ["t"]})
    result = await webhook(queues, verifier).accept(body.encode())
    assert result.accepted == 0
    assert result.dropped == {"unverified:token_expired": 2}
    assert result.to_dict()["dropped"] == {"refused": 2}
    assert queues.sent[NOTIFY] == []


async def test_keys_unavailable_is_not_a_verdict(key: DecryptionKey) -> None:
    """The issuer's keys could not be fetched: the error propagates (503, Graph redelivers), nothing kept."""
    queues = FakeQueues()
    verifier = Verifier(SigningKeysUnavailableError("no keys"))
    with pytest.raises(SigningKeysUnavailableError):
        await webhook(queues, verifier).accept(json.dumps({"value": [rich_item(key)]}).encode())
    assert queues.sent[NOTIFY] == []


async def test_rich_notifications_off_drops_the_content_as_before(key: DecryptionKey) -> None:
    queues = FakeQueues()
    result = await webhook(queues, None).accept(json.dumps({"value": [rich_item(key)]}).encode())
    assert result.accepted == 1
    assert "encryptedContent" not in queued(queues)[0]


class RecordingDispatcher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def dispatch_many(self, events: list[Event]) -> list[DispatchResult]:
        self.events += events
        return [DispatchResult(event, (), frozenset(), frozenset()) for event in events]


def processor(dispatcher: RecordingDispatcher, queues: FakeQueues, ring: KeyRing | None) -> NotificationProcessor:
    def decrypt(content: Mapping[str, Any]) -> dict[str, Any]:
        assert ring is not None
        return decrypt_content(content, ring)

    return NotificationProcessor(
        cast(ExactlyOnceDispatcher, dispatcher), cast(Queues, queues), decrypt=decrypt if ring else None
    )


async def test_processor_decrypts_into_the_event_and_poisons_what_does_not_decrypt(key: DecryptionKey) -> None:
    dispatcher, queues = RecordingDispatcher(), FakeQueues()
    good = rich_item(key)
    tampered = rich_item(key, dataSignature="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    tampered["resourceData"] = {**tampered["resourceData"], "id": "other", "@odata.etag": 'W/"2"'}
    unknown = rich_item(key, encryptionCertificateId="retired-cert")
    unknown["resourceData"] = {**unknown["resourceData"], "id": "third", "@odata.etag": 'W/"3"'}
    message = encode_envelope(datetime.now(UTC), [json.dumps(i) for i in (good, tampered, unknown)])
    result = await processor(dispatcher, queues, KeyRing(key)).process(message)
    assert (result.published, result.poisoned) == (1, 2)
    [event] = dispatcher.events
    assert event.data == RESOURCE
    assert event.to_dict()["data"] == RESOURCE
    poisoned = queues.sent[NOTIFY + "-poison"]
    assert len(poisoned) == 2
    text = "\n".join(poisoned)
    assert "bad_data_signature" in text
    assert "unknown_certificate" in text
    assert "first lines" not in text  # no plaintext in the poison queue


async def test_processor_without_decryption_treats_rich_items_as_basic(key: DecryptionKey) -> None:
    dispatcher = RecordingDispatcher()
    message = encode_envelope(datetime.now(UTC), [json.dumps(rich_item(key))])
    result = await processor(dispatcher, FakeQueues(), None).process(message)
    assert result.published == 1
    assert dispatcher.events[0].data is None
