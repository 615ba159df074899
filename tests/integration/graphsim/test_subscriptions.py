"""Subscriptions through the real GraphServiceClient: handshake, create/renew/delete, expiry,
and validation of what the client asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription

from devtools.graphsim.client import SimControl
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer
from tests.integration.graphsim.receiver import Receiver

pytestmark = pytest.mark.integration


def new_subscription(receiver: Receiver, resource: str = "users", **overrides: Any) -> Subscription:
    """A valid mail subscription request for ``resource`` (one hour)."""
    fields: dict[str, Any] = {
        "change_type": "created,updated,deleted",
        "notification_url": receiver.url("/notify"),
        "lifecycle_notification_url": receiver.url("/lifecycle"),
        "resource": resource,
        "expiration_date_time": datetime.now(UTC) + timedelta(hours=1),
        "client_state": "s3cret-state",
    }
    fields.update(overrides)
    return Subscription(**fields)


async def test_create_runs_the_handshake_on_both_urls(
    graph_client: Any, receiver: Receiver, user: dict[str, Any]
) -> None:
    """POST /subscriptions validates notification and lifecycle URLs, then answers 201 in Graph's shape."""
    created = await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    assert created.id
    assert created.client_state == "s3cret-state"
    assert created.change_type == "created,updated,deleted"
    assert created.application_id
    assert created.creator_id
    assert created.latest_supported_tls_version == "v1_2"
    assert len(receiver.validation_tokens) == 2
    assert receiver.validation_tokens[0].startswith("Validation: Testing client application reachability")


async def test_renew_and_delete(graph_client: Any, graphsim: SimControl, receiver: Receiver) -> None:
    """PATCH moves expirationDateTime; DELETE removes the subscription (then 404)."""
    created = await graph_client.subscriptions.post(new_subscription(receiver, "/Users"))
    item = graph_client.subscriptions.by_subscription_id(created.id)
    later = datetime.now(UTC) + timedelta(days=20)
    renewed = await item.patch(Subscription(expiration_date_time=later))
    assert abs((renewed.expiration_date_time - later).total_seconds()) < 1
    listed = await graph_client.subscriptions.get()
    assert [s.id for s in listed.value] == [created.id]
    await item.delete()
    with pytest.raises(ODataError) as caught:
        await item.get()
    assert caught.value.response_status_code == 404
    assert graphsim.subscriptions() == []


async def test_renew_beyond_the_maximum_lifetime_is_400(
    graph_client: Any, receiver: Receiver, user: dict[str, Any]
) -> None:
    """Mail subscriptions live at most 10,080 minutes, renewals included."""
    created = await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    with pytest.raises(ODataError) as caught:
        await graph_client.subscriptions.by_subscription_id(created.id).patch(
            Subscription(expiration_date_time=datetime.now(UTC) + timedelta(minutes=10_081))
        )
    assert caught.value.response_status_code == 400
    assert "10080 minutes" in caught.value.error.message


async def test_reauthorize_answers_204(graph_client: Any, receiver: Receiver) -> None:
    """POST /subscriptions/{id}/reauthorize succeeds for a live subscription."""
    created = await graph_client.subscriptions.post(new_subscription(receiver, "users"))
    await graph_client.subscriptions.by_subscription_id(created.id).reauthorize.post()


@pytest.mark.parametrize("mode", ["wrong", "json", "error"])
async def test_failed_handshake_is_400_validation_error(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any], mode: str
) -> None:
    """A wrong body, a non-text/plain answer or a 500 fails the handshake: 400 and no subscription."""
    receiver.validation = mode
    with pytest.raises(ODataError) as caught:
        await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    assert caught.value.response_status_code == 400
    assert caught.value.error.code == "ValidationError"
    assert graphsim.subscriptions() == []


async def test_slow_handshake_times_out(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """An endpoint slower than the handshake timeout (10 s by default, shortened here) fails."""
    graphsim.configure(handshake_timeout_s=0.3)
    receiver.validation, receiver.delay_s = "slow", 1.0
    with pytest.raises(ODataError) as caught:
        await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    assert caught.value.error.code == "ValidationError"
    assert "timed out" in caught.value.error.message


async def test_clock_advance_past_expiration_removes_the_subscription(
    graph_client: Any, graphsim: SimControl, receiver: Receiver, user: dict[str, Any]
) -> None:
    """Once the simulator clock passes expirationDateTime the subscription is 404 and silent."""
    created = await graph_client.subscriptions.post(new_subscription(receiver, f"users/{user['id']}/messages"))
    graphsim.advance_clock(3601)
    with pytest.raises(ODataError) as caught:
        await graph_client.subscriptions.by_subscription_id(created.id).get()
    assert caught.value.response_status_code == 404
    graphsim.create_message(user["id"])
    graphsim.wait_deliveries_idle()
    assert receiver.items() == []


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"client_state": "x" * 256}, "clientState"),
        ({"change_type": "created,exploded"}, "changeType"),
        ({"notification_url": "http://example.com/hook"}, "https"),
        # Offsets from the moment the test runs (not from collection: a long session would age them).
        ({"expiration_date_time": timedelta(minutes=-1)}, "future"),
        ({"expiration_date_time": timedelta(minutes=10_090)}, "10080 minutes"),
        ({"resource": "groups"}, "not supported"),
    ],
)
async def test_invalid_subscription_requests_are_400(
    graph_client: Any, receiver: Receiver, user: dict[str, Any], overrides: dict[str, Any], fragment: str
) -> None:
    """Bad clientState, changeType, URL scheme, expiration or resource: 400 before any handshake."""
    fields = {"resource": f"users/{user['id']}/messages", **overrides}
    if isinstance(offset := fields.get("expiration_date_time"), timedelta):
        fields["expiration_date_time"] = datetime.now(UTC) + offset
    with pytest.raises(ODataError) as caught:
        await graph_client.subscriptions.post(new_subscription(receiver, **fields))
    assert caught.value.response_status_code == 400
    assert fragment in caught.value.error.message
    assert receiver.validation_tokens == []


async def test_users_subscription_may_live_41760_minutes(graph_client: Any, receiver: Receiver) -> None:
    """Users allow a longer lifetime than mail."""
    long = datetime.now(UTC) + timedelta(minutes=41_700)
    created = await graph_client.subscriptions.post(new_subscription(receiver, "users", expiration_date_time=long))
    assert created.id


def test_malformed_json_body_is_400(graphsim_server: GraphSimServer, graphsim: SimControl) -> None:
    """A body that is not JSON gets Graph's BadRequest shape, never a 500."""
    response = httpx.post(
        f"{graphsim_server.base_url}/subscriptions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {GRAPHSIM_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert set(response.json()["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
