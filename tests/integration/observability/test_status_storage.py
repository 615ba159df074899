"""The status document against Azurite: shared breaker state, subscriptions without secrets, queue depths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.events.poison import write_poison
from shared.names import WORK_QUEUES
from shared.secret import Secret
from shared.status import build_status
from shared.subscriptions.records import SubscriptionRecord
from shared.wiring import BREAKERS, QUEUES, SUBSCRIPTION_REGISTRY, registry, status_sources

pytestmark = pytest.mark.integration

CLIENT_STATE = "status-test-client-state-" + "x" * 20


def record(subscription_id: str, expires_in: timedelta, **fields: object) -> SubscriptionRecord:
    now = datetime.now(UTC)
    return SubscriptionRecord(
        id=subscription_id,
        resource="users",
        change_types=("updated",),
        notification_url="https://example.invalid/api/notifications",
        client_state=Secret(CLIENT_STATE),
        expiration=now + expires_in,
        created_at=now,
        **fields,  # type: ignore[arg-type]
    )


def depth(document: dict[str, object], name: str) -> int:
    queues = document["queues"]
    assert isinstance(queues, list)
    (queue,) = [q for q in queues if q["name"] == name]
    return int(queue["depth"])


async def test_status_shows_shared_state_and_never_a_client_state(app_env: dict[str, str]) -> None:
    """An isolated breaker, two subscriptions (soonest first, with last error, no clientState), and the
    poison queue's depth growing by what was parked; no section reports an error."""
    before = await build_status(status_sources(registry))
    subscriptions = await registry.get(SUBSCRIPTION_REGISTRY)
    await subscriptions.upsert(record("sub-late", timedelta(days=20)))
    await subscriptions.upsert(record("sub-soon", timedelta(hours=3), status="failed", last_error="ThrottledError: x"))
    await (await registry.get(BREAKERS)).isolate("graph-mail")
    queues = await registry.get(QUEUES)
    for i in range(2):
        await write_poison(queues, "graph-events", f"event-{i}", "test")

    document = await build_status(status_sources(registry))

    assert document["errors"] == {}
    breakers = {b["key"]: b for b in document["breakers"]}
    assert set(breakers) == {"graph-directory", "graph-mail", "graph-subscriptions"}
    assert breakers["graph-mail"]["state"] == "isolated"
    assert breakers["graph-directory"]["state"] == "closed"
    assert [s["id"] for s in document["subscriptions"]] == ["sub-soon", "sub-late"]
    soon = document["subscriptions"][0]
    assert (soon["status"], soon["last_error"]) == ("failed", "ThrottledError: x")
    assert 3 * 3600 - 60 < soon["expires_in_seconds"] <= 3 * 3600
    assert CLIENT_STATE not in str(document)
    names = {q["name"] for q in document["queues"]}
    assert names == {n for q in WORK_QUEUES for n in (q, f"{q}-poison")}
    assert depth(document, "graph-events-poison") == depth(before, "graph-events-poison") + 2
    (poison,) = [q for q in document["queues"] if q["name"] == "graph-events-poison"]
    assert poison["poison"] is True
    assert poison["oldest_age_seconds"] is not None


async def test_status_reports_an_unreachable_section_instead_of_failing(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Storage unreachable the document still comes back, naming each section it could not read and
    the error code (never a message), with this process's own statistics intact. The breakers answer from
    their per-process fallback, marked as such."""
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    await registry.reset()
    document = await build_status(status_sources(registry))
    assert document["errors"] == dict.fromkeys(("subscriptions", "queues", "fleets"), "storage_unavailable")
    assert {b["storage"] for b in document["breakers"]} == {"unavailable"}
    assert document["subscriptions"] is None
    assert "graph" in document  # this process's own section needs no Storage
