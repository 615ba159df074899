"""Delta catch-up against the simulator: baseline, exactly-once changes, crash replay, 410 resync."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools.graphsim.client import SimControl
from shared.events.model import Event
from shared.graph.delta import DeltaReader
from shared.graph.gateway import GraphGateway
from shared.storage import Tables, safe_key
from shared.subscriptions.catchup import DeltaCatchup
from shared.subscriptions.desired import parse_resource
from tests.integration.subscriptions.conftest import Stack


@pytest.fixture(name="stack")
def _stack(make_stack: Any) -> Stack:
    stack: Stack = make_stack("")
    return stack


async def test_first_run_is_a_baseline_and_publishes_nothing(stack: Stack, mailbox: str) -> None:
    """The mailbox's 20-odd existing inbox messages (several pages) are not news downstream."""
    result = await stack.catchup.catch_up(parse_resource(f"users/{mailbox}/messages"))

    assert result.baseline
    assert stack.published.events == []


async def test_changes_after_the_baseline_are_published_exactly_once(
    stack: Stack, graphsim: SimControl, mailbox: str
) -> None:
    """Created and changed messages become ``messages.updated``, deletions ``messages.deleted``; the
    next run publishes nothing new."""
    spec = parse_resource(f"users/{mailbox}/messages")
    await stack.catchup.catch_up(spec)
    [new] = graphsim.create_message(mailbox, count=1)
    old = graphsim.messages(mailbox, folder="inbox")[0]["id"]
    graphsim.update_message(mailbox, old, isRead=True)
    gone = graphsim.messages(mailbox, folder="inbox")[1]["id"]
    graphsim.delete_message(mailbox, gone)

    result = await stack.catchup.catch_up(spec)
    again = await stack.catchup.catch_up(spec)

    assert result.published == 3
    assert again.published == 0
    assert sorted(stack.published.types()) == sorted(
        [("messages.updated", new["id"]), ("messages.updated", old), ("messages.deleted", gone)]
    )
    assert {e.resource for e in stack.published.events} >= {f"Users/{mailbox}/Messages/{gone}"}


async def test_users_delta_publishes_updates_and_deletions(stack: Stack, graphsim: SimControl) -> None:
    """Users: the baseline costs one ``$deltatoken=latest`` call; later changes are published once."""
    spec = parse_resource("users")
    graphsim.clear_requests()
    await stack.catchup.catch_up(spec)
    assert len(graphsim.requests(route="GET /users/delta")) == 1
    users = graphsim.users()
    graphsim.update_user(users[0]["id"], jobTitle="Chief Tester")
    graphsim.delete_user(users[1]["id"])

    await stack.catchup.catch_up(spec)

    assert sorted(stack.published.types()) == sorted(
        [("users.updated", users[0]["id"]), ("users.deleted", users[1]["id"])]
    )


async def test_a_failed_publish_keeps_the_link_so_the_round_replays_with_the_same_ids(
    stack: Stack, gateway: GraphGateway, tables: Tables, graphsim: SimControl, mailbox: str
) -> None:
    """The link is stored only after every change was published: a crash replays the round, and the
    replayed events carry the same ids (so the deduplicating dispatcher drops the repeats)."""
    spec = parse_resource(f"users/{mailbox}/messages")
    await stack.catchup.catch_up(spec)
    graphsim.create_message(mailbox, count=3)
    seen: list[Event] = []

    async def crash_on_second(event: Event) -> None:
        seen.append(event)
        if len(seen) == 2:
            raise RuntimeError("worker died")

    failing = DeltaCatchup(DeltaReader(gateway), tables, stack.leases, crash_on_second)
    with pytest.raises(RuntimeError):
        await failing.catch_up(spec)
    assert await stack.catchup.pending() == [spec.resource]

    await stack.catchup.run_pending()

    assert len(stack.published.events) == 3
    assert [e.id for e in seen] == [e.id for e in stack.published.events[:2]]
    assert await stack.catchup.pending() == []


async def test_an_invalidated_delta_link_leads_to_a_full_resync(
    stack: Stack, graphsim: SimControl, mailbox: str
) -> None:
    """410 ``SyncStateNotFound``: the round starts over and publishes every current inbox message as
    updated (what changed in the gap is unknown); the new link then works normally."""
    spec = parse_resource(f"users/{mailbox}/messages")
    await stack.catchup.catch_up(spec)
    graphsim.invalidate_delta("mail")

    result = await stack.catchup.catch_up(spec)

    inbox = {m["id"] for m in graphsim.messages(mailbox, folder="inbox")}
    assert result.resynced
    assert result.published == len(inbox)
    assert {e.message_id for e in stack.published.events} == inbox
    assert {e.type for e in stack.published.events} == {"messages.updated"}
    assert (await stack.catchup.catch_up(spec)).published == 0


async def test_a_single_user_resource_publishes_one_update_per_catch_up(stack: Stack, mailbox: str) -> None:
    """``users/{id}`` has no delta of its own: after the baseline, a catch-up says "this user changed"."""
    spec = parse_resource(f"users/{mailbox}")
    assert (await stack.catchup.catch_up(spec)).baseline

    await stack.catchup.catch_up(spec)

    assert stack.published.types() == [("users.updated", mailbox)]


async def test_a_change_between_graph_creating_a_subscription_and_our_record_is_caught_up(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    """A message created right after Graph created the subscription but before the app recorded it (so the
    webhook would drop its notification as unknown) is published by the catch-up that follows creation."""
    from shared.graph.subscriptions import GraphSubscriptions

    stack: Stack = make_stack(f"users/{mailbox}/messages=created")
    created: list[str] = []

    class ChangeDuringCreate(GraphSubscriptions):
        async def create(self, new: Any) -> dict[str, Any]:
            body = await super().create(new)
            created.append(graphsim.create_message(mailbox, subject="in the gap")[0]["id"])
            return body

    stack.service._steps.graph = ChangeDuringCreate(stack.service._steps.graph._gateway)  # type: ignore[attr-defined]
    await stack.service.reconcile()
    assert created
    assert created[0] in [e.message_id for e in stack.published.events]


async def test_a_long_round_pauses_and_resumes_without_losing_or_repeating(
    stack: Stack, graphsim: SimControl, mailbox: str
) -> None:
    """A round over its time budget stops at a page boundary with its progress saved; the next runs continue
    from there, so every change is published once even when a round cannot finish in one invocation."""
    from dataclasses import replace

    spec = parse_resource(f"users/{mailbox}/messages")
    await stack.catchup.catch_up(spec)  # baseline
    created = {m["id"] for m in graphsim.create_message(mailbox, count=25)}
    stack.catchup.config = replace(stack.catchup.config, max_round_seconds=0.0)  # pause after every page

    results = []
    for _ in range(10):
        results.append(await stack.catchup.catch_up(spec))
        if not results[-1].paused:
            break
    assert any(r.paused for r in results)
    assert not results[-1].paused
    published = [e.message_id for e in stack.published.events]
    assert sorted(published) == sorted(created)
    assert await stack.catchup.pending() == []


@pytest.mark.parametrize("resource", ["users/{mailbox}/messages", "users"])
async def test_a_link_saved_under_another_base_url_is_used_on_the_current_one(
    stack: Stack, tables: Tables, graphsim: SimControl, mailbox: str, resource: str
) -> None:
    """Links are stored relative to GRAPH_BASE_URL; a row stored as an absolute link under a base URL that is
    gone (here a closed port) is rebased onto the current one instead of calling the old host."""
    spec = parse_resource(resource.format(mailbox=mailbox))
    await stack.catchup.catch_up(spec)  # baseline
    table = await tables.get(stack.catchup.config.table)
    row = await table.get_entity("delta", safe_key(spec.resource))
    stored = urlsplit(row["DeltaLink"])
    assert not stored.scheme
    assert not stored.netloc
    path = stored.path if stored.path.startswith("/") else f"/v1.0/{stored.path}"
    row["DeltaLink"] = f"http://127.0.0.1:9{path}?{stored.query}"  # written by an older version, old base URL
    await table.upsert_entity(row)
    if spec.kind == "users":
        graphsim.update_user(graphsim.users()[3]["id"], jobTitle="Rebased")
    else:
        graphsim.create_message(mailbox, count=1)

    result = await stack.catchup.catch_up(spec)

    assert (result.published, result.resynced) == (1, False)
    row = await table.get_entity("delta", safe_key(spec.resource))
    assert not urlsplit(row["DeltaLink"]).netloc


async def test_a_mail_catch_up_is_paced_by_the_request_budget(
    gateway: GraphGateway, tables: Tables, stack: Stack, graphsim: SimControl, mailbox: str
) -> None:
    """A catch-up is a burst of delta pages like a mirror round: each page takes a token from the budget
    (GRAPH_RATE_LIMIT, shared/graph/pacing.py), throttled answers included."""
    from shared.graph.pacing import RateLimit, RequestBudget

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    now = [0.0]
    budget = RequestBudget(RateLimit(1, 1.0), clock=lambda: now[0], sleep=sleep)
    reader = DeltaReader(
        gateway,
        pace=budget.acquire,
        on_response=lambda response: budget.observe(response.status_code, response.headers),
    )
    catchup = DeltaCatchup(reader, tables, stack.leases, stack.published)
    graphsim.add_fault(r"/messages/delta", 429, retry_after=1, count=1)

    result = await catchup.catch_up(parse_resource(f"users/{mailbox}/messages"))

    pages = len(graphsim.requests(path_regex=r"/messages/delta", status=200))
    assert result.baseline
    assert pages >= 3  # the inbox's messages take several pages
    assert len(graphsim.requests(path_regex=r"/messages/delta", status=429)) == 1
    assert len(slept) >= pages - 1  # one token per second: every page after the first waited for one
    assert budget.waited >= pages - 1
