"""Mailbox fleets against the simulator and Azurite: a group's members each get a subscription, joins and
leaves follow at the next reconcile, a member without a mailbox is backed off, a Graph outage while reading
members removes nothing, and a settled fleet costs no subscription work."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from devtools.graphsim.client import SimControl
from shared.subscriptions.service import SubscriptionConfig
from tests.integration.subscriptions.conftest import SimClock, Stack


def member_resources(sim: SimControl) -> set[str]:
    return {s["resource"] for s in sim.subscriptions()}


def fleet_of(sim: SimControl, count: int) -> tuple[str, list[str]]:
    users = [u["id"] for u in sim.users() if u["accountEnabled"]][:count]  # the seed disables about 5%
    return sim.create_group(members=users, displayName="Sales")["id"], users


async def test_each_member_gets_a_subscription_and_joins_and_leaves_follow(
    make_stack: Any, graphsim: SimControl
) -> None:
    group, users = fleet_of(graphsim, 6)
    stack: Stack = make_stack(f"mailboxes(group={group})/mailFolders/inbox/messages=created,updated")

    first = await stack.service.reconcile()
    expected = {f"users/{u}/mailFolders/inbox/messages" for u in users}
    assert set(first.created) == expected
    assert member_resources(graphsim) == expected
    assert first.fleets == {f"mailboxes(group={group})/mailFolders/inbox/messages": 6}

    joiner = graphsim.create_user(displayName="New Hire", userPrincipalName="hire@contoso.onmicrosoft.com")["id"]
    graphsim.add_member(group, joiner)
    graphsim.remove_member(group, users[0])
    graphsim.update_user(users[1], accountEnabled=False)  # a disabled account leaves the fleet too
    second = await stack.service.reconcile()
    assert second.created == (f"users/{joiner}/mailFolders/inbox/messages",)
    assert set(second.removed) == {f"users/{u}/mailFolders/inbox/messages" for u in users[:2]}
    assert len(second.unchanged) == 4
    assert member_resources(graphsim) == {f"users/{u}/mailFolders/inbox/messages" for u in [*users[2:], joiner]}


async def test_a_settled_fleet_makes_no_subscription_calls(make_stack: Any, graphsim: SimControl) -> None:
    """After the first reconcile, the next one reads the members (one page) and two tables: no Graph
    subscription call, no lease."""
    group, _ = fleet_of(graphsim, 8)
    stack: Stack = make_stack(f"mailboxes(group={group})/messages=created")
    await stack.service.reconcile()
    graphsim.clear_requests()
    again = await stack.service.reconcile()
    assert (len(again.unchanged), again.created, again.removed) == (8, (), ())
    assert [r["path"] for r in graphsim.requests()] == [f"/groups/{group}/members/graph.user"]


async def test_a_member_without_a_mailbox_is_backed_off_not_retried_every_run(
    make_stack: Any, graphsim: SimControl, sim_clock: SimClock
) -> None:
    group, users = fleet_of(graphsim, 3)
    graphsim.set_mailbox(users[2], False)
    stack: Stack = make_stack(f"mailboxes(group={group})/messages=created")
    unlicensed = f"users/{users[2]}/messages"

    first = await stack.service.reconcile()
    assert first.no_mailbox == (unlicensed,)
    assert len(first.created) == 2
    assert await stack.catchup.pending() == []  # its failed baseline is not retried by every renewal run
    graphsim.clear_requests()
    second = await stack.service.reconcile()
    assert second.no_mailbox == (unlicensed,)
    assert not [r for r in graphsim.requests() if users[2] in r["path"] or r["path"].endswith("/subscriptions")]

    graphsim.set_mailbox(users[2], True)
    sim_clock.advance(timedelta(hours=1, minutes=1))  # the first backoff is one hour
    third = await stack.service.reconcile()
    assert third.created == (unlicensed,)
    assert len(graphsim.subscriptions()) == 3


async def test_members_unreadable_removes_nothing(make_stack: Any, graphsim: SimControl) -> None:
    """A Graph outage while listing members must not unsubscribe the fleet."""
    group, _ = fleet_of(graphsim, 4)
    stack: Stack = make_stack(f"mailboxes(group={group})/messages=created")
    await stack.service.reconcile()
    graphsim.add_fault(r"^/groups/", 503, count=100)
    result = await stack.service.reconcile()
    assert (result.removed, result.created, result.fleets) == ((), (), {})
    assert len(graphsim.subscriptions()) == 4


async def test_work_beyond_the_runs_budget_is_deferred_to_the_next_run(make_stack: Any, graphsim: SimControl) -> None:
    """A run that has used its budget starts no new creation (none is cut off midway); the next run goes on."""
    group, _ = fleet_of(graphsim, 5)
    desired = f"mailboxes(group={group})/messages=created"
    spent = await make_stack(desired, config=SubscriptionConfig(reconcile_budget=timedelta(0))).service.reconcile()
    assert (len(spent.deferred), spent.created, graphsim.subscriptions()) == (5, (), [])
    later = await make_stack(desired).service.reconcile()
    assert len(later.created) == 5
