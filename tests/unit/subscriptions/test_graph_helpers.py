"""Pure helpers around Graph answers: expiration parsing, resync detection, delta targets, views."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import NotFoundError, PermanentError, UnavailableError
from shared.graph.delta import DeltaTarget, is_resync
from shared.graph.subscriptions import expiration_of
from shared.subscriptions.catchup import delta_target
from shared.subscriptions.desired import parse_resource
from shared.subscriptions.management import SubscriptionView


def test_expiration_accepts_graphs_seven_fractional_digits() -> None:
    parsed = expiration_of({"expirationDateTime": "2030-01-02T03:04:05.1234567Z"})

    assert parsed == datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize("body", [{}, {"expirationDateTime": 5}, {"expirationDateTime": "soon"}])
def test_a_subscription_without_a_valid_expiration_is_an_upstream_failure(body: dict[str, object]) -> None:
    with pytest.raises(UnavailableError):
        expiration_of(body)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermanentError("gone", status=410, upstream_code="SyncStateNotFound"), True),
        (PermanentError("gone", status=410), True),
        (PermanentError("expired token", status=400, upstream_code="syncStateNotFound"), True),
        (PermanentError("bad", status=400, upstream_code="resyncRequired"), True),
        (PermanentError("bad request", status=400, upstream_code="BadRequest"), False),
        (NotFoundError("no user", status=404), False),
    ],
)
def test_lost_sync_state_is_recognised_by_status_or_code(error: PermanentError, expected: bool) -> None:
    """410 and the sync-state codes (Graph sends 400 ``syncStateNotFound`` for expired directory tokens)."""
    assert is_resync(error) is expected


def test_each_resource_maps_to_the_delta_that_covers_it() -> None:
    """A mailbox's messages are caught up through its inbox; one user has no delta of its own."""
    assert delta_target(parse_resource("users")) == DeltaTarget("users")
    assert delta_target(parse_resource("users/U/messages")) == DeltaTarget("messages", "u", "inbox")
    assert delta_target(parse_resource("users/u/mailFolders/Archive/messages")) == DeltaTarget(
        "messages", "u", "Archive"
    )
    assert delta_target(parse_resource("users/u")) is None


def test_a_view_serialises_without_any_client_state() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    view = SubscriptionView(
        "id",
        "users",
        ("updated",),
        "desired",
        "active",
        now,
        now,
        None,
        None,
        "https://x/n",
        "https://x/l",
        False,
        None,
    )

    assert view.to_dict() == {
        "id": "id",
        "resource": "users",
        "changeTypes": ["updated"],
        "origin": "desired",
        "status": "active",
        "expiration": "2030-01-01T00:00:00+00:00",
        "createdAt": "2030-01-01T00:00:00+00:00",
        "renewedAt": None,
        "lastError": None,
        "notificationUrl": "https://x/n",
        "lifecycleUrl": "https://x/l",
        "includeResourceData": False,
        "encryptionCertificateId": None,
    }
