"""A mailbox fleet end to end (harness + simulator + Azurite): a group of 50 members gets 50 subscriptions, a
joiner is subscribed (with its delta baseline) and a leaver unsubscribed within one reconcile, a member
without a mailbox is recorded and not retried every run, and mail in any member's inbox reaches
``graph-events``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink
from tests.waiting import wait_until


def ops(app: RunningApp, *argv: str) -> Any:
    """The ops CLI against this app's storage and Graph (its own process, the app's settings)."""
    env = {**os.environ, **app.env}
    command = [sys.executable, "-m", "shared.ops", "--settings", "/nonexistent/local.settings.json", *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


RECONCILE = re.compile(
    r"reconcile: created (\d+), removed (\d+), unchanged (\d+), busy \d+, failed (\d+), no mailbox (\d+)"
)


def test_a_group_fleet_follows_its_members(start_app: StartApp, graphsim: SimControl) -> None:
    graphsim.reset(users=60)
    enabled = [u["id"] for u in graphsim.users() if u["accountEnabled"]]
    members, joiner, unlicensed = enabled[:50], enabled[50], enabled[51]
    graphsim.set_mailbox(unlicensed, False)
    group = graphsim.create_group(members=[*members, unlicensed], displayName="Support")["id"]
    port = free_port()
    app = start_app(
        port=port,
        GRAPH_SUBSCRIPTIONS=f"mailboxes(group={group})/mailFolders/inbox/messages=created",
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}/api",
        SUBSCRIPTION_RENEWAL_SCHEDULE="*/5 * * * * *",  # a reconcile every 5 s instead of every 30 min
    )

    def runs() -> list[tuple[int, ...]]:
        return [tuple(int(n) for n in m.groups()) for m in RECONCILE.finditer(app.host.output)]

    wait_until(lambda: runs(), timeout=60)
    assert runs()[0] == (50, 0, 0, 0, 1)  # created, removed, unchanged, failed, no mailbox
    assert {s["resource"] for s in graphsim.subscriptions()} == {
        f"users/{m}/mailFolders/inbox/messages" for m in members
    }

    graphsim.clear_requests()
    graphsim.add_member(group, joiner)
    graphsim.remove_member(group, members[0])
    first = len(runs())
    wait_until(lambda: any(run[:2] == (1, 1) for run in runs()[first:]), timeout=30)
    live = {s["resource"] for s in graphsim.subscriptions()}
    assert f"users/{joiner}/mailFolders/inbox/messages" in live
    assert f"users/{members[0]}/mailFolders/inbox/messages" not in live
    assert len(live) == 50
    assert graphsim.requests(path_regex=rf"^/users/{joiner}/mailFolders/inbox/messages/delta")  # its baseline
    # The unlicensed member was asked once at start; within its one-hour backoff no later run asks again.
    wait_until(lambda: len(runs()) >= first + 2, timeout=30)
    assert all(run[4] == 1 for run in runs())
    assert graphsim.requests(path_regex=rf"^/users/{unlicensed}") == []
    assert app.host.output.count("no mailbox to subscribe") == 1

    sink = EventSink(app)
    [message] = graphsim.create_message(members[7], subject="Fleet hello")
    graphsim.wait_deliveries_idle()
    events = sink.wait_for_matching({message["id"]})
    assert [(e["type"], e["user_id"]) for e in events] == [("messages.created", members[7])]

    # Operations: the status page and the ops CLI show the fleet; the CLI forces one member's reconcile.
    fleet = f"mailboxes(group={group})/mailFolders/inbox/messages"
    unlicensed_resource = f"users/{unlicensed}/mailFolders/inbox/messages"
    [shown] = app.client.get("/api/status", headers={"x-functions-key": app.host.master_key}).json()["fleets"]
    assert (shown["fleet"], shown["members"], shown["subscribed"], shown["no_mailbox"]) == (fleet, 51, 50, 1)
    assert [m["resource"] for m in shown["without_mailbox"]] == [unlicensed_resource]
    assert (
        "MailboxNotEnabledForRESTAPI" in shown["without_mailbox"][0]["reason"] or shown["without_mailbox"][0]["reason"]
    )
    states = {m["resource"]: m["state"] for m in ops(app, "fleet", fleet)}
    assert len(states) == 51
    assert states[unlicensed_resource] == "no_mailbox"
    assert list(states.values()).count("subscribed") == 50
    graphsim.set_mailbox(unlicensed, True)
    assert ops(app, "fleet", "reconcile", unlicensed_resource) == {
        "resource": unlicensed_resource,
        "outcome": "created",
    }
    assert len(graphsim.subscriptions()) == 51
