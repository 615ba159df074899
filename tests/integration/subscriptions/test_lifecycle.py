"""Lifecycle reactions and lost subscriptions: recreate, catch up exactly once, reauthorize."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from devtools.graphsim.client import SimControl
from shared.events.notifications import LifecycleNotification
from tests.integration.subscriptions.conftest import SimClock, Stack


def lifecycle(event: str, subscription_id: str) -> LifecycleNotification:
    return LifecycleNotification(subscription_id=subscription_id, lifecycle_event=event)


async def mail_stack(make_stack: Any, mailbox: str) -> tuple[Stack, str]:
    stack: Stack = make_stack(f"users/{mailbox}/messages=created,updated,deleted")
    await stack.service.reconcile()
    [record] = await stack.registry.list_all()
    return stack, record.id


async def test_subscription_removed_is_recreated_and_the_gap_is_caught_up_exactly_once(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """Graph removes the subscription; changes made before we react are published once, with a new
    subscription and a new clientState in place, and nothing is published again on later runs."""
    stack, old_id = await mail_stack(make_stack, mailbox)
    old_secret = (await stack.registry.get(old_id)).client_state.reveal()  # type: ignore[union-attr]
    graphsim.lifecycle(old_id, "subscriptionRemoved")
    created = [m["id"] for m in graphsim.create_message(mailbox, count=2, subject="while away")]
    deleted = next(m["id"] for m in graphsim.messages(mailbox, folder="inbox") if m["id"] not in created)
    graphsim.delete_message(mailbox, deleted)

    await stack.service.subscription_removed(lifecycle("subscriptionRemoved", old_id))

    [new] = await stack.registry.list_all()
    assert new.id != old_id
    assert new.client_state.reveal() != old_secret
    assert [s["id"] for s in graphsim.subscriptions()] == [new.id]
    assert (await stack.service.get_subscription(new.id)).origin == "desired"  # type: ignore[union-attr]
    assert sorted(stack.published.types()) == sorted(
        [("messages.updated", created[0]), ("messages.updated", created[1]), ("messages.deleted", deleted)]
    )
    assert all(e.source == "delta" and e.user_id == mailbox for e in stack.published.events)

    await stack.service.subscription_removed(lifecycle("subscriptionRemoved", old_id))  # redelivered
    await stack.service.renew_due()
    await stack.service.missed(lifecycle("missed", new.id))
    assert len(stack.published.events) == 3
    assert len(graphsim.subscriptions()) == 1


async def test_a_subscription_that_expired_silently_is_recreated_on_the_next_tick(
    make_stack: Any, graphsim: SimControl, sim_clock: SimClock, mailbox: str
) -> None:
    """Not due yet, but missing from Graph's list: the renewal's 404 confirms it, and it is recreated
    and caught up (the message that arrived meanwhile is published once)."""
    stack, old_id = await mail_stack(make_stack, mailbox)
    graphsim.expire_subscription(old_id)
    [message] = graphsim.create_message(mailbox, count=1)
    sim_clock.advance(timedelta(hours=1))

    result = await stack.service.renew_due()

    assert (result.recreated, result.failed) == (1, 0)
    [new] = await stack.registry.list_all()
    assert [s["id"] for s in graphsim.subscriptions()] == [new.id] != [old_id]
    assert stack.published.types() == [("messages.updated", message["id"])]
    assert await stack.catchup.pending() == []


async def test_missed_catches_up_the_resource(make_stack: Any, graphsim: SimControl, mailbox: str) -> None:
    """``missed``: the changes since the last delta link are published; the subscription is untouched."""
    stack, subscription_id = await mail_stack(make_stack, mailbox)
    [message] = graphsim.create_message(mailbox, count=1)
    graphsim.clear_requests()

    await stack.service.missed(lifecycle("missed", subscription_id))

    assert stack.published.types() == [("messages.updated", message["id"])]
    assert graphsim.requests(path_regex="^/subscriptions") == []


async def test_reauthorization_required_reauthorizes_the_subscription(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """``reauthorizationRequired`` → ``POST /subscriptions/{id}/reauthorize``."""
    stack, subscription_id = await mail_stack(make_stack, mailbox)
    graphsim.clear_requests()

    await stack.service.reauthorization_required(lifecycle("reauthorizationRequired", subscription_id))

    calls = graphsim.requests(path_regex="^/subscriptions")
    assert [(c["method"], c["path"]) for c in calls] == [("POST", f"/subscriptions/{subscription_id}/reauthorize")]
    assert (await stack.registry.get(subscription_id)).status == "active"  # type: ignore[union-attr]


async def test_reauthorization_falls_back_to_a_renewal_when_reauthorize_is_refused(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """A refused reauthorize (403) is followed by a PATCH renewal, which also reauthorizes."""
    stack, subscription_id = await mail_stack(make_stack, mailbox)
    graphsim.add_fault(r"/reauthorize$", 403)
    graphsim.clear_requests()

    await stack.service.reauthorization_required(lifecycle("reauthorizationRequired", subscription_id))

    calls = [(c["method"], c["status"]) for c in graphsim.requests(path_regex="^/subscriptions")]
    assert calls == [("POST", 403), ("PATCH", 200)]
    record = await stack.registry.get(subscription_id)
    assert record is not None
    assert record.renewed_at is not None


async def test_lifecycle_events_for_unknown_subscriptions_are_ignored(make_stack: Any, graphsim: SimControl) -> None:
    """Not ours (or already replaced): nothing is called, nothing raised, so the message completes."""
    service = make_stack("").service

    await service.reauthorization_required(lifecycle("reauthorizationRequired", "unknown-id"))
    await service.subscription_removed(lifecycle("subscriptionRemoved", "unknown-id"))
    await service.missed(lifecycle("missed", "unknown-id"))

    assert graphsim.requests(path_regex="^/subscriptions") == []
