"""The directory mirror against the simulator and Azurite: first fill, events from differences (one per
version, never twice), renames, deletions, 410 resyncs, interrupted rounds, debounced signals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from devtools.graphsim.client import SimControl
from shared.errors import NotFoundError, UnavailableError
from shared.events.model import Event
from tests.integration.mirror.conftest import MirrorStack


def _notification(user_id: str) -> Event:
    """A users notification as the processor makes it (no etag: the 5-minute identity)."""
    return Event(
        id=f"window-{user_id}",
        type="users.updated",
        resource=f"Users/{user_id}",
        change_type="updated",
        subscription_id="sub",
        tenant_id=None,
        user_id=user_id,
        message_id=None,
        received_at=datetime.now(UTC),
        source="notification",
    )


async def _queued(mirror: MirrorStack) -> int:
    """Round messages waiting (visible or not) on this test's round queue."""
    queue = await mirror.queues.get(mirror.queue_name)
    props = await queue.get_queue_properties()
    return int(props.approximate_message_count)


async def test_the_first_round_fills_the_mirror_and_publishes_nothing(
    mirror: MirrorStack, graphsim: SimControl
) -> None:
    users = graphsim.users()
    first = await mirror.coordinator.run_round()
    again = await mirror.coordinator.run_round()

    assert first.result is not None
    assert first.result.baseline
    assert again.result is not None
    assert again.result.published == 0
    assert again.result.unchanged == 0
    assert mirror.forwarded.events == []
    row = await mirror.store.user(users[0]["id"])
    assert row is not None
    assert row.user["displayName"] == users[0]["displayName"]
    assert await mirror.store.alias(users[0]["userPrincipalName"].upper()) == users[0]["id"].lower()
    found = await mirror.reader.find(users[3]["userPrincipalName"].lower(), is_guid=False)
    assert found is not None
    assert found.source == "mirror"
    assert found.value["id"] == users[3]["id"]


async def test_two_updates_two_seconds_apart_make_two_events_with_different_versions(
    mirror: MirrorStack, graphsim: SimControl
) -> None:
    """Graph sends only the changed property: the mirror merges it, so the other fields stay."""
    await mirror.sync.run()
    user = graphsim.users()[0]
    graphsim.update_user(user["id"], jobTitle="First")
    await mirror.sync.run()
    await asyncio.sleep(2)
    graphsim.update_user(user["id"], jobTitle="Second")
    await mirror.sync.run()

    updates = mirror.forwarded.of("users.updated")
    assert [e.user_id for e in updates] == [user["id"].lower()] * 2
    assert len({e.version for e in updates}) == 2
    assert len({e.id for e in updates}) == 2
    row = await mirror.store.user(user["id"])
    assert row is not None
    assert row.user["jobTitle"] == "Second"
    assert row.user["displayName"] == user["displayName"]


async def test_going_back_to_an_earlier_state_is_still_a_new_event(mirror: MirrorStack, graphsim: SimControl) -> None:
    await mirror.sync.run()
    user_id = graphsim.users()[0]["id"]
    for title in ("A", "B", "A"):
        graphsim.update_user(user_id, jobTitle=title)
        await mirror.sync.run()

    updates = mirror.forwarded.of("users.updated")
    assert len(updates) == 3
    assert len({e.id for e in updates}) == 3
    assert updates[0].version == updates[2].version


async def test_a_redelivered_notification_costs_one_round_and_one_event(
    mirror: MirrorStack, graphsim: SimControl
) -> None:
    """Three deliveries of one notification: three signals, one round message, one event."""
    await mirror.coordinator.run_round()
    user_id = graphsim.users()[0]["id"]
    graphsim.update_user(user_id, jobTitle="Once")
    for _ in range(3):
        result = await mirror.signaling.dispatch(_notification(user_id))
        assert not result.failed
    assert mirror.forwarded.events == []  # the notification itself is not forwarded
    assert await _queued(mirror) == 1

    outcome = await mirror.coordinator.run_round()
    replay = await mirror.coordinator.run_round()  # an overlapping / repeated round

    assert outcome.result is not None
    assert outcome.result.updated == 1
    assert not outcome.followed
    assert replay.result is not None
    assert replay.result.published == 0
    assert [e.type for e in mirror.forwarded.events] == ["users.updated"]


async def test_signals_racing_on_several_instances_enqueue_one_round(mirror: MirrorStack) -> None:
    """Three deliveries of one notification processed at the same moment (three messages, three instances):
    the waiting mark is a conditional write, so one of them enqueues the round and the others join it."""
    await mirror.coordinator.run_round()
    await asyncio.gather(*(mirror.coordinator.signal() for _ in range(3)))

    assert await _queued(mirror) == 1


async def test_a_signal_after_a_round_enqueues_the_next_one(mirror: MirrorStack) -> None:
    """The waiting mark is cleared when a round starts, so the next signal is not mistaken for a burst."""
    await mirror.coordinator.signal()
    await mirror.coordinator.signal()
    assert await _queued(mirror) == 1
    await mirror.coordinator.run_round()
    await mirror.coordinator.signal()
    assert await _queued(mirror) == 2


async def test_a_signal_during_a_round_causes_exactly_one_more(mirror: MirrorStack, graphsim: SimControl) -> None:
    await mirror.coordinator.run_round()
    user_id = graphsim.users()[0]["id"]
    graphsim.update_user(user_id, jobTitle="During")
    signals = 0

    async def signal_during_the_round() -> None:
        nonlocal signals
        if signals < 3:
            signals += 1
            await mirror.coordinator.signal()

    mirror.pace_hook.append(signal_during_the_round)
    await mirror.coordinator.run_round()

    assert signals == 1  # one page: one pace call during the round
    assert await _queued(mirror) == 1  # exactly one more round waits


async def test_a_round_message_that_meets_a_running_round_comes_back_later(
    mirror: MirrorStack, graphsim: SimControl
) -> None:
    await mirror.coordinator.run_round()
    outcomes = []

    async def another_instance_tries() -> None:
        if not outcomes:
            outcomes.append(await mirror.coordinator.run_round())

    mirror.pace_hook.append(another_instance_tries)
    await mirror.coordinator.run_round()

    assert outcomes[0].busy
    assert await _queued(mirror) == 1


async def test_a_rename_moves_the_alias_before_the_event(mirror: MirrorStack, graphsim: SimControl) -> None:
    await mirror.sync.run()
    user = graphsim.users()[0]
    old_upn, new_upn = user["userPrincipalName"], "renamed.person@contoso.example"
    graphsim.update_user(user["id"], userPrincipalName=new_upn)
    seen_at_publish: list[tuple[str | None, str | None]] = []

    async def check(event: Event) -> None:
        seen_at_publish.append((await mirror.store.alias(old_upn), await mirror.store.alias(new_upn)))

    mirror.dispatcher.bus.subscribe("check", check, ["users.*"])
    await mirror.sync.run()

    assert seen_at_publish == [(None, user["id"].lower())]
    assert await mirror.reader.find(old_upn.lower(), is_guid=False) is None  # the API falls back (Graph: 404)
    renamed = await mirror.reader.find(new_upn, is_guid=False)
    assert renamed is not None
    assert renamed.value["userPrincipalName"] == new_upn


async def test_a_deleted_user_publishes_deleted_and_answers_404(mirror: MirrorStack, graphsim: SimControl) -> None:
    await mirror.sync.run()
    user = graphsim.users()[1]
    graphsim.delete_user(user["id"])
    await mirror.sync.run()
    await mirror.sync.run()

    assert [(e.type, e.user_id) for e in mirror.forwarded.events] == [("users.deleted", user["id"].lower())]
    with pytest.raises(NotFoundError):
        await mirror.reader.find(user["id"], is_guid=True)
    assert await mirror.store.alias(user["userPrincipalName"]) is None


async def test_a_410_resync_without_changes_publishes_nothing(mirror: MirrorStack, graphsim: SimControl) -> None:
    await mirror.sync.run()
    graphsim.invalidate_delta("users")

    result = await mirror.sync.run()

    assert result.resynced
    assert result.published == 0
    assert result.unchanged == len(graphsim.users())
    assert mirror.forwarded.events == []


async def test_a_resync_after_three_lost_changes_publishes_exactly_three(
    mirror: MirrorStack, graphsim: SimControl
) -> None:
    """Notifications were lost and the sync state too: the full round finds the three real differences,
    the deletion included (a user the mirror has but Graph no longer lists)."""
    await mirror.sync.run()
    users = graphsim.users()
    graphsim.update_user(users[0]["id"], jobTitle="Lost one")
    graphsim.delete_user(users[1]["id"])
    created = graphsim.create_user(displayName="New Person", userPrincipalName="new.person@contoso.example")
    graphsim.invalidate_delta("users")

    result = await mirror.sync.run()

    assert result.resynced
    assert sorted((e.type, e.user_id) for e in mirror.forwarded.events) == sorted(
        [
            ("users.updated", users[0]["id"].lower()),
            ("users.deleted", users[1]["id"].lower()),
            ("users.created", created["id"].lower()),
        ]
    )


async def test_a_round_interrupted_by_503s_resumes_from_its_last_saved_page(
    mirror: MirrorStack, graphsim: SimControl
) -> None:
    """250 changed users over three pages; Graph fails after the first page: the rerun starts at the saved
    page and every change is published exactly once."""
    graphsim.reset(users=250, messages_per_user=0)
    await mirror.sync.run()
    users = graphsim.users()
    assert len(users) == 250
    for user in users:
        graphsim.update_user(user["id"], department="Moved")
    graphsim.add_fault(r"^/users/delta", 503, count=10, after=1)  # the first page passes, the rest fail
    with pytest.raises(UnavailableError):
        await mirror.sync.run()
    published_before = len(mirror.forwarded.events)
    state = await mirror.store.state()
    assert state["NextLink"]
    assert published_before == 100

    for rule in graphsim.faults():
        graphsim.remove_fault(rule["id"])
    graphsim.clear_requests()
    result = await mirror.sync.run()

    first = graphsim.requests(route="GET /users/delta")[0]
    assert "skiptoken" in first["path"] + str(first.get("query", ""))
    assert result.updated == 150
    ids = [e.user_id for e in mirror.forwarded.events]
    assert len(ids) == len(set(ids)) == 250


async def test_the_reader_falls_back_when_the_mirror_is_stale(mirror: MirrorStack, graphsim: SimControl) -> None:
    from datetime import timedelta

    await mirror.sync.run()
    user_id = graphsim.users()[0]["id"]
    assert await mirror.reader.find(user_id, is_guid=True) is not None
    mirror.clock.advance(timedelta(seconds=601))

    assert await mirror.reader.find(user_id, is_guid=True) is None
    tick = await mirror.coordinator.tick()  # the safety net runs a round now
    assert tick.result is not None
    assert await mirror.reader.find(user_id, is_guid=True) is not None


async def test_a_first_fill_interrupted_then_expired_starts_over_silently(
    mirror: MirrorStack, graphsim: SimControl
) -> None:
    """The first fill stops after a page (503s); meanwhile its page link expires (410): the next round fills
    the mirror from the start, still publishing nothing."""
    graphsim.reset(users=250, messages_per_user=0)
    graphsim.add_fault(r"^/users/delta", 503, count=10, after=1)  # the first page passes, the rest fail
    with pytest.raises(UnavailableError):
        await mirror.sync.run()
    for rule in graphsim.faults():
        graphsim.remove_fault(rule["id"])
    graphsim.invalidate_delta("users")

    result = await mirror.sync.run()

    assert result.baseline
    assert not result.resynced
    assert mirror.forwarded.events == []
    assert len(await mirror.store.users(u["id"] for u in graphsim.users())) == 250
    assert (await mirror.store.state())["Filled"] is True


async def test_old_tombstones_are_swept_and_live_users_stay(mirror: MirrorStack, graphsim: SimControl) -> None:
    """A deleted user's row stays (404, late ``@removed`` ignored) until the sweep's cutoff passes its last
    write; live users and younger tombstones are never swept."""
    from datetime import timedelta

    await mirror.sync.run()
    gone, alive = graphsim.users()[0], graphsim.users()[1]
    graphsim.delete_user(gone["id"])
    await mirror.sync.run()
    row = await mirror.store.user(gone["id"])
    assert row is not None
    assert row.deleted

    assert await mirror.store.sweep_tombstones(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await mirror.store.sweep_tombstones(datetime.now(UTC) + timedelta(minutes=1)) == 1

    assert await mirror.store.user(gone["id"]) is None
    assert await mirror.store.user(alive["id"]) is not None
    graphsim.update_user(alive["id"], jobTitle="Still here")
    await mirror.sync.run()
    assert [(e.type, e.user_id) for e in mirror.forwarded.events] == [
        ("users.deleted", gone["id"].lower()),
        ("users.updated", alive["id"].lower()),
    ]
