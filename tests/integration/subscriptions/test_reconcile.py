"""Reconcile against the simulator: desired subscriptions are created once, unwanted ones removed."""

from __future__ import annotations

import asyncio
from typing import Any

from devtools.graphsim.client import SimControl
from tests.integration.subscriptions.conftest import Stack


def live_resources(sim: SimControl) -> list[str]:
    return sorted(s["resource"] for s in sim.subscriptions())


async def test_reconcile_creates_the_missing_subscriptions_with_a_secret_each(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """Each desired resource gets a subscription with both webhook URLs and its own random clientState."""
    stack: Stack = make_stack(f"users=updated,deleted; users/{mailbox}/messages=created,updated,deleted")

    result = await stack.service.reconcile()

    assert sorted(result.created) == sorted(["users", f"users/{mailbox}/messages"])
    live = {s["resource"]: s for s in graphsim.subscriptions()}
    assert sorted(live) == sorted(["users", f"users/{mailbox}/messages"])
    records = {r.resource: r for r in await stack.registry.list_all()}
    for resource, subscription in live.items():
        record = records[resource]
        assert record.id == subscription["id"]
        assert record.client_state.reveal() == subscription["clientState"]
        assert len(record.client_state.reveal()) >= 43
        assert subscription["notificationUrl"].endswith("/notifications")
        assert subscription["lifecycleNotificationUrl"].endswith("/notifications/lifecycle")
    assert records["users"].client_state.reveal() != records[f"users/{mailbox}/messages"].client_state.reveal()
    assert records["users"].change_types == ("updated", "deleted")


async def test_reconcile_is_idempotent(make_stack: Any, graphsim: SimControl) -> None:
    """A second reconcile with the same desired state makes no Graph call that changes anything."""
    stack: Stack = make_stack("users=updated")
    await stack.service.reconcile()
    graphsim.clear_requests()

    result = await stack.service.reconcile()

    assert result.unchanged == ("users",)
    assert graphsim.requests(method="POST") == []
    assert graphsim.requests(method="DELETE") == []


async def test_reconcile_removes_unwanted_desired_subscriptions_and_keeps_ad_hoc_ones(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """Dropping a resource from the desired state deletes its subscription; ad hoc ones survive."""
    first: Stack = make_stack(f"users=updated; users/{mailbox}/messages=created")
    await first.service.reconcile()
    ad_hoc = await first.service.create(f"users/{mailbox}/mailFolders/inbox/messages", ["created", "deleted"])
    users_id = next(r.id for r in await first.registry.list_all() if r.resource == "users")

    result = await make_stack("users=updated").service.reconcile()

    assert result.removed == (f"users/{mailbox}/messages",)
    assert result.unchanged == ("users",)
    assert live_resources(graphsim) == sorted(["users", f"users/{mailbox}/mailFolders/inbox/messages"])
    assert {r.id for r in await first.registry.list_all()} == {users_id, ad_hoc.id}
    assert (await first.service.get_subscription(ad_hoc.id)) is not None


async def test_reconcile_replaces_a_subscription_whose_change_types_changed(
    make_stack: Any, graphsim: SimControl
) -> None:
    """New change types mean a new subscription (Graph cannot patch them); the old one is removed after."""
    await make_stack("users=updated").service.reconcile()
    stack: Stack = make_stack("users=updated,deleted")

    result = await stack.service.reconcile()

    assert result.created == ("users",)
    live = graphsim.subscriptions()
    assert [s["changeType"] for s in live] == ["updated,deleted"]
    assert [r.id for r in await stack.registry.list_all()] == [live[0]["id"]]


async def test_concurrent_reconciles_create_each_subscription_once(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """Two instances reconciling at the same moment: the resource lease lets one of them create each."""
    desired = f"users=updated; users/{mailbox}/messages=created,updated"
    stacks: list[Stack] = [make_stack(desired) for _ in range(3)]

    await asyncio.gather(*(s.service.reconcile() for s in stacks))
    await stacks[0].service.reconcile()  # whoever was busy before finds it done now

    assert len(graphsim.requests(route="POST /subscriptions")) == 2
    assert live_resources(graphsim) == sorted(["users", f"users/{mailbox}/messages"])
    assert len(await stacks[0].registry.list_all()) == 2


async def test_switching_an_entry_to_the_event_hub_replaces_its_subscription(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """``@eventhub`` creates the subscription with Graph's EventHub: URL for both kinds of notification (no
    handshake: the receiver sees none); switching back and forth replaces it, each state converging once."""
    webhook: Stack = make_stack(f"users/{mailbox}/messages=created")
    await webhook.service.reconcile()
    (before,) = graphsim.subscriptions()
    graphsim.clear_deliveries()

    hub: Stack = make_stack(f"users/{mailbox}/messages=created@eventhub")
    result = await hub.service.reconcile()

    assert result.created == (f"users/{mailbox}/messages",)
    (after,) = graphsim.subscriptions()
    assert after["id"] != before["id"]
    url = "EventHub:https://graphsim-hub.servicebus.windows.net/eventhubname/graph-notifications?tenantId=contoso.com"
    assert (after["notificationUrl"], after["lifecycleNotificationUrl"]) == (url, url)
    assert [d["kind"] for d in graphsim.deliveries()] == ["validation"]  # into the hub, not a handshake
    assert (await hub.service.reconcile()).unchanged == (f"users/{mailbox}/messages",)
    assert (await webhook.service.reconcile()).created == (f"users/{mailbox}/messages",)
    (back,) = graphsim.subscriptions()
    assert back["notificationUrl"].endswith("/notifications")
