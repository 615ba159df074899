"""Rich notifications end to end over loopback: the simulator (a real process) encrypts a message for the
subscription's certificate and signs validation tokens; a receiver gets the POST; shared/richdata fetches
the simulated OpenID configuration and keys over HTTP, verifies the tokens and decrypts the item."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from msgraph.generated.models.subscription import Subscription

from devtools.encryption_certificate import generate_pem
from devtools.graphsim.client import SimControl, SimControlError
from devtools.graphsim.seed import APPLICATION_ID, TENANT_ID
from shared.richdata import errors
from shared.richdata.decrypt import decrypt_content
from shared.richdata.keyring import DecryptionKey, KeyRing, load_key
from shared.richdata.post import verify_post
from shared.richdata.signing_keys import SigningKeys, httpx_fetch_json
from shared.richdata.tokens import TokenPolicy, TokenValidator
from tests.integration.graphsim.receiver import Receiver

pytestmark = pytest.mark.integration
SELECT = "subject,bodyPreview,importance"


@pytest.fixture(name="old_key", scope="module")
def _old_key() -> DecryptionKey:
    return load_key("cert-old", generate_pem())


@pytest.fixture(name="new_key", scope="module")
def _new_key() -> DecryptionKey:
    return load_key("cert-new", generate_pem())


@pytest.fixture(name="validator")
async def _validator(graphsim: SimControl) -> AsyncIterator[TokenValidator]:
    """Our validator against the simulator's token service, with our app id = the simulator's app."""
    async with httpx.AsyncClient(timeout=10) as client:
        keys = SigningKeys(httpx_fetch_json(client), graphsim.openid_configuration_url, min_refresh_interval_s=0)
        yield TokenValidator(keys, TokenPolicy(audiences=frozenset({APPLICATION_ID})))


def rich_subscription(receiver: Receiver, user_id: str, key: DecryptionKey, select: str = SELECT) -> Subscription:
    return Subscription(
        change_type="created,updated,deleted",
        notification_url=receiver.url("/notify"),
        resource=f"users/{user_id}/messages?$select={select}",
        expiration_date_time=datetime.now(UTC) + timedelta(hours=1),
        client_state="s3cret-state",
        include_resource_data=True,
        encryption_certificate=key.encryption_certificate,
        encryption_certificate_id=key.certificate_id,
    )


async def test_created_message_arrives_encrypted_signed_and_decrypts(
    graph_client: Any,
    graphsim: SimControl,
    receiver: Receiver,
    user: dict[str, Any],
    old_key: DecryptionKey,
    validator: TokenValidator,
) -> None:
    created = await graph_client.subscriptions.post(rich_subscription(receiver, user["id"], old_key))
    assert created.include_resource_data is True
    assert created.encryption_certificate_id == "cert-old"
    [message] = graphsim.create_message(user["id"], subject="Quarterly numbers", importance="high")
    graphsim.wait_deliveries_idle()
    [post] = receiver.posts()
    [item] = post["value"]
    assert item["encryptedContent"]["encryptionCertificateThumbprint"] == old_key.thumbprint
    assert "Quarterly" not in str(post)  # nothing in clear text
    [verified] = await verify_post(post, validator)
    assert (verified.tenant_id, verified.audience) == (TENANT_ID, APPLICATION_ID)
    resource = decrypt_content(item["encryptedContent"], KeyRing(old_key))
    assert resource == {"subject": "Quarterly numbers", "bodyPreview": message["bodyPreview"], "importance": "high"}
    assert graphsim.richdata()["fetches"] == {"configuration": 1, "keys": 1}


async def test_deleted_messages_carry_no_resource_data_and_no_tokens(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any], old_key: DecryptionKey
) -> None:
    await graph_client.subscriptions.post(rich_subscription(receiver, user["id"], old_key))
    [message] = graphsim.create_message(user["id"])
    graphsim.wait_deliveries_idle()
    receiver.payloads.clear()
    graphsim.delete_message(user["id"], message["id"])
    graphsim.wait_deliveries_idle()
    [post] = receiver.posts()
    assert "encryptedContent" not in post["value"][0]
    assert "validationTokens" not in post


ITEM_FAULTS = {
    "tampered_data": errors.DataSignatureError,
    "bad_data_signature": errors.DataSignatureError,
    "unknown_certificate_id": errors.UnknownCertificateError,
}
TOKEN_FAULTS = {
    "wrong_signature": errors.TokenSignatureError,
    "wrong_audience": errors.WrongAudienceError,
    "expired_token": errors.TokenExpiredError,
    "wrong_issuer": errors.WrongIssuerError,
    "wrong_publisher": errors.WrongPublisherError,
    "no_tokens": errors.MissingTokensError,
}


@pytest.mark.parametrize("fault", sorted(ITEM_FAULTS | TOKEN_FAULTS))
async def test_each_fault_is_refused_with_its_reason(
    graph_client: Any,
    graphsim: SimControl,
    receiver: Receiver,
    user: dict[str, Any],
    old_key: DecryptionKey,
    validator: TokenValidator,
    fault: str,
) -> None:
    """The first message is spoiled by the fault, the second (fault used up) verifies and decrypts."""
    await graph_client.subscriptions.post(rich_subscription(receiver, user["id"], old_key))
    graphsim.add_rich_fault(fault)
    graphsim.create_message(user["id"], subject="spoiled")
    graphsim.wait_deliveries_idle()
    graphsim.create_message(user["id"], subject="fine")
    graphsim.wait_deliveries_idle()
    spoiled, fine = receiver.posts()
    ring = KeyRing(old_key)
    if fault in TOKEN_FAULTS:
        with pytest.raises(TOKEN_FAULTS[fault]):
            await verify_post(spoiled, validator)
    else:
        await verify_post(spoiled, validator)  # the POST is Graph's; one item's content is not
        with pytest.raises(ITEM_FAULTS[fault]):
            decrypt_content(spoiled["value"][0]["encryptedContent"], ring)
    await verify_post(fine, validator)
    assert decrypt_content(fine["value"][0]["encryptedContent"], ring)["subject"] == "fine"
    assert graphsim.richdata()["faults"] == {}


async def test_rotated_signing_key_is_fetched_on_its_first_token(
    graph_client: Any,
    graphsim: SimControl,
    receiver: Receiver,
    user: dict[str, Any],
    old_key: DecryptionKey,
    validator: TokenValidator,
) -> None:
    await graph_client.subscriptions.post(rich_subscription(receiver, user["id"], old_key))
    graphsim.create_message(user["id"])
    graphsim.wait_deliveries_idle()
    await verify_post(receiver.posts()[0], validator)
    rotated = graphsim.rotate_signing_key()
    assert rotated["published_kids"] == [rotated["signing_kid"]]
    graphsim.create_message(user["id"])
    graphsim.wait_deliveries_idle()
    await verify_post(receiver.posts()[1], validator)
    assert graphsim.richdata()["fetches"] == {"configuration": 2, "keys": 2}


async def test_certificate_rotation_old_and_new_items_both_decrypt(
    graph_client: Any,
    graphsim: SimControl,
    receiver: Receiver,
    user: dict[str, Any],
    old_key: DecryptionKey,
    new_key: DecryptionKey,
) -> None:
    """Renewal moves the subscription to the new certificate; items already encrypted for the old one (and
    redelivered later) still decrypt while the old key stays in the ring."""
    sub = await graph_client.subscriptions.post(rich_subscription(receiver, user["id"], old_key))
    graphsim.create_message(user["id"], subject="before")
    graphsim.wait_deliveries_idle()
    renewal = Subscription(
        expiration_date_time=datetime.now(UTC) + timedelta(hours=2),
        encryption_certificate=new_key.encryption_certificate,
        encryption_certificate_id=new_key.certificate_id,
    )
    renewed = await graph_client.subscriptions.by_subscription_id(sub.id).patch(renewal)
    assert renewed.encryption_certificate_id == "cert-new"
    graphsim.create_message(user["id"], subject="after")
    graphsim.wait_deliveries_idle()
    before, after = (post["value"][0]["encryptedContent"] for post in receiver.posts())
    assert (before["encryptionCertificateId"], after["encryptionCertificateId"]) == ("cert-old", "cert-new")
    ring = KeyRing(new_key, previous=[old_key])
    assert [decrypt_content(c, ring)["subject"] for c in (before, after)] == ["before", "after"]
    with pytest.raises(errors.UnknownCertificateError):
        decrypt_content(before, KeyRing(new_key))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encryption_certificate": None}, "encryptionCertificate"),
        ({"encryption_certificate_id": None}, "encryptionCertificateId"),
        ({"encryption_certificate": "bm90IGEgY2VydGlmaWNhdGU="}, "X.509"),
        ({"resource": "users/{user}/messages"}, "$select"),
        ({"resource": "users/{user}/messages?$select=subject,body"}, "body"),
        ({"resource": "users"}, "users"),
    ],
)
async def test_rich_subscriptions_graph_would_refuse(
    graphsim: SimControl,
    graphsim_server: Any,
    receiver: Receiver,
    user: dict[str, Any],
    old_key: DecryptionKey,
    change: dict[str, Any],
    message: str,
) -> None:
    body = {
        "changeType": "created",
        "notificationUrl": receiver.url("/notify"),
        "resource": change.get("resource", f"users/{user['id']}/messages?$select=subject").format(user=user["id"]),
        "expirationDateTime": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "includeResourceData": True,
        "encryptionCertificate": change.get("encryption_certificate", old_key.encryption_certificate),
        "encryptionCertificateId": change.get("encryption_certificate_id", old_key.certificate_id),
    }
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{graphsim_server.base_url}/subscriptions", json=body, headers={"Authorization": "Bearer t"}
        )
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]
    assert receiver.validation_tokens == []  # refused before any handshake


def test_unknown_fault_is_refused(graphsim: SimControl) -> None:
    with pytest.raises(SimControlError) as caught:
        graphsim.add_rich_fault("everything_breaks")
    assert caught.value.status == 400
