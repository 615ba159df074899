"""An instance killed (SIGKILL) in the middle of processing: the queue messages it held come back after
their receive lease and the other instances process them; nothing is lost or published twice.

A module of its own: it leaves its cluster with one instance fewer.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp
from tests.e2e.pipeline import EventSink, queue_length
from tests.fixtures.cluster import Cluster, wait_until

pytestmark = pytest.mark.e2e
VICTIM = 1
NOTIFICATIONS = 400
AFTER_KILL = 30


def _in_flight(cluster: Cluster, index: int) -> int:
    return cluster.executing("process_notifications", index) - cluster.executed("process_notifications", index)


def test_messages_in_flight_on_a_killed_instance_are_processed_by_the_others(cluster: Cluster, sim: SimControl) -> None:
    wait_until(lambda: len(sim.subscriptions()) >= 2, 30, "the desired subscriptions")
    mailbox = sim.users()[0]["id"]
    # Ten per POST: many queue messages, so every instance's listener gets some (at 100 per POST one instance
    # could drain the few messages alone before the victim polled).
    per_post = sim.config()["max_items_per_post"]
    sim.configure(max_items_per_post=10)
    try:
        created = {m["id"] for m in sim.create_message(mailbox, count=NOTIFICATIONS)}
        victim = cluster.instances[VICTIM]
        deadline = time.monotonic() + 60
        more_at = time.monotonic() + 0.5
        while _in_flight(cluster, VICTIM) == 0:  # kill it while it runs queue messages
            assert time.monotonic() < deadline, "the victim never had a queue message in flight"
            if time.monotonic() >= more_at:  # more work until the victim's listener takes some
                created |= {m["id"] for m in sim.create_message(mailbox, count=20)}
                more_at = time.monotonic() + 0.5
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        killed_in_flight = _in_flight(cluster, VICTIM)
        # Graph may have delivered everything before the kill: changes made after it make the front meet the
        # dead instance (its round robin gives it every third POST).
        created |= {m["id"] for m in sim.create_message(mailbox, count=AFTER_KILL)}
        sim.wait_deliveries_idle(timeout_s=120)
    finally:
        sim.configure(max_items_per_post=per_post)
    app = RunningApp(cluster.instances[0], cluster.client(0), cluster.env)
    events = [
        e for e in EventSink(app).wait_for_matching(created, timeout=120, settle=2.0) if e["message_id"] in created
    ]
    counts = Counter(e["message_id"] for e in events)

    assert killed_in_flight >= 1
    assert set(counts) == created, f"{len(created - set(counts))} notifications lost"
    assert max(counts.values()) == 1, [m for m, n in counts.items() if n > 1]
    assert queue_length(app, "graph-notifications") == 0
    assert queue_length(app, "graph-notifications-poison") == 0
    # The front sent later POSTs to the live instances: none of Graph's deliveries was lost on the dead one.
    assert cluster.front.stats()["skipped"].get(victim.base_url, 0) >= 1
    assert not any(d.get("outcome") == "failed" for d in sim.deliveries(kind="notification"))
