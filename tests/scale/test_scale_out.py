"""The app scaled out to three instances: what must hold across instances (issue 16, item 1).

Schedules fire on one instance (the host's singleton lock), notifications spread over all instances are
published once, the breaker's state reaches every instance within its lag and half-open admits one probe
across them, directory mirror rounds run one at a time, cache invalidation reaches every instance within
the L1 bound.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from devtools.graphsim.client import SimControl
from tests.e2e.conftest import RunningApp
from tests.e2e.pipeline import EventSink
from tests.fixtures.cluster import Cluster, wait_until
from tests.scale.conftest import BREAKER_STATE_LAG_SECONDS, INSTANCES, L1_BOUND_SECONDS

pytestmark = pytest.mark.e2e
WAVES = 6


def _sink(cluster: Cluster) -> EventSink:
    return EventSink(RunningApp(cluster.instances[0], cluster.client(0), cluster.env))


def _subscribed(cluster: Cluster, sim: SimControl) -> list[dict[str, Any]]:
    """The cluster's Graph subscriptions, once reconcile created both desired ones."""
    wait_until(lambda: len(sim.subscriptions()) >= 2, 30, "the desired subscriptions")
    return sim.subscriptions()


def _idle(cluster: Cluster, function: str) -> bool:
    return cluster.executing(function) == cluster.executed(function)


def _renewal_snapshot(cluster: Cluster, sim: SimControl) -> tuple[int, Counter[str]]:
    """(renewal runs finished, PATCHes per subscription) read while no run is in progress."""
    while True:
        wait_until(lambda: _idle(cluster, "renew_subscriptions"), 10, "a renewal run to finish", interval=0.05)
        runs = cluster.executed("renew_subscriptions")
        patches = Counter(r["path"].rsplit("/", 1)[-1] for r in sim.requests(r"^/subscriptions/", method="PATCH"))
        if _idle(cluster, "renew_subscriptions") and cluster.executed("renew_subscriptions") == runs:
            return runs, patches


def test_timers_fire_on_one_instance_and_renew_each_subscription_once_per_run(
    cluster: Cluster, sim: SimControl
) -> None:
    # The mailbox subscription (168 h at most) is always due with a 600 h threshold; the directory's (696 h) not.
    due = {s["id"]: s["resource"].endswith("/messages") for s in _subscribed(cluster, sim)}
    runs_before, patches_before = _renewal_snapshot(cluster, sim)
    wait_until(lambda: cluster.executed("renew_subscriptions") >= runs_before + 3, 20, "three more renewal runs")
    runs_after, patches_after = _renewal_snapshot(cluster, sim)

    runs = runs_after - runs_before
    renewed = {sid: patches_after[sid] - patches_before[sid] for sid in due}
    assert renewed == {sid: runs if is_due else 0 for sid, is_due in due.items()}
    # Every timer ran on one instance only (the holder of its lock), the start-up runs included.
    for timer in ("renew_subscriptions", "mirror_safety_net"):
        ran_on = [i for i in range(INSTANCES) if cluster.executed(timer, i)]
        assert len(ran_on) == 1, f"{timer} ran on instances {ran_on}"
    assert cluster.logged("Singleton lock acquired") == 3  # three timers, each held by one instance


def test_notifications_spread_over_instances_are_published_once(cluster: Cluster, sim: SimControl) -> None:
    """Graph's POSTs go through the front to all three instances, whose queue listeners share the work:
    every created message is published exactly once."""
    _subscribed(cluster, sim)
    mailbox = sim.users()[0]["id"]
    before = {i: cluster.executed("process_notifications", i) for i in range(INSTANCES)}
    front_before = cluster.front.stats()["answered"]
    # Waves further apart than the listeners' longest poll interval (host.json maxPollingInterval, 2 s): one
    # instance drains a single burst before the others poll again (a batched message takes ~0.1 s), so it is
    # the waves, each taken by whichever listener polls first, that show the work shared.
    per_post = sim.config()["max_items_per_post"]
    sim.configure(max_items_per_post=10)
    created: set[str] = set()
    try:
        for _ in range(WAVES):
            created |= {m["id"] for m in sim.create_message(mailbox, count=150 // WAVES)}
            sim.wait_deliveries_idle(timeout_s=60)
            time.sleep(2.5)
    finally:
        sim.configure(max_items_per_post=per_post)

    events = [e for e in _sink(cluster).wait_for_matching(created, timeout=60) if e["message_id"] in created]
    counts = Counter(e["message_id"] for e in events)
    assert set(counts) == created  # none lost
    assert max(counts.values()) == 1  # none published twice
    answered = cluster.front.stats()["answered"]
    assert all(answered[host.base_url] > front_before.get(host.base_url, 0) for host in cluster.instances)
    processed_on = [i for i in range(INSTANCES) if cluster.executed("process_notifications", i) > before[i]]
    assert len(processed_on) >= 2, f"only instance(s) {processed_on} processed notifications"


def _messages(client: httpx.Client, user_id: str) -> httpx.Response:
    return client.get(f"/api/users/{user_id}/messages", params={"top": 5})


def _breaker_state(cluster: Cluster, name: str) -> str:
    status = httpx.get(
        f"{cluster.instances[0].base_url}/api/status", headers={"x-functions-key": cluster.master_key}, timeout=10
    ).json()
    return str(next(b["state"] for b in status["breakers"] if b["key"] == name))


def test_breaker_opens_for_every_instance_within_its_lag_and_probes_once(cluster: Cluster, sim: SimControl) -> None:
    users = [u["id"] for u in sim.users()[1:9]]
    failing = sim.add_fault(r"^/users/[^/]+/messages$", 503, method="GET")
    try:
        for user in users[:2]:  # instance 0 meets the failures and trips the shared breaker
            assert _messages(cluster.client(0), user).status_code == 503
        wait_until(lambda: _breaker_state(cluster, "graph-mail") == "open", 10, "the mail breaker to open")
        time.sleep(BREAKER_STATE_LAG_SECONDS + 0.2)  # the documented bound on how late an instance notices
        sim.clear_requests()
        for index, user in zip((1, 2), users[2:4], strict=True):
            assert _messages(cluster.client(index), user).status_code == 503
        assert sim.requests(r"/messages$", method="GET") == []  # refused by the breaker, not by Graph
    finally:
        sim.remove_fault(failing)

    # Half-open: Graph answers again, slowly; a burst on all instances lets exactly one probe through.
    slow = sim.add_fault(r"^/users/[^/]+/messages$", method="GET", latency_ms=1500)
    try:
        wait_until(lambda: _breaker_state(cluster, "graph-mail") != "open", 15, "the open period to end")
        sim.clear_requests()
        burst = [(index % INSTANCES, user) for index, user in enumerate(users[2:8])]
        with ThreadPoolExecutor(len(burst)) as pool:
            statuses = list(pool.map(lambda call: _messages(cluster.client(call[0]), call[1]).status_code, burst))
        assert sorted(statuses) == [200] + [503] * (len(burst) - 1), statuses
        assert len(sim.requests(r"/messages$", method="GET")) == 1
    finally:
        sim.remove_fault(slow)
    wait_until(lambda: _breaker_state(cluster, "graph-mail") == "closed", 10, "the breaker to close")


def test_mirror_rounds_run_one_at_a_time(cluster: Cluster, sim: SimControl) -> None:
    """The same round requested on all three instances at once: one runs it, the others find the lease
    taken (the round is slowed down so they all meet it)."""
    wait_until(lambda: cluster.logged("mirror round:") >= 1, 30, "the first mirror round")
    wait_until(lambda: _idle(cluster, "mirror_round"), 30, "mirror rounds in progress")
    rounds_before = cluster.logged("mirror round:")
    invoked_before = cluster.executed("mirror_round")
    slow = sim.add_fault(r"^/users/delta", method="GET", latency_ms=1500)
    try:
        with ThreadPoolExecutor(INSTANCES) as pool:
            answers = list(pool.map(_request_round(cluster), range(INSTANCES)))
        assert answers == [202] * INSTANCES
        wait_until(lambda: cluster.executed("mirror_round") >= invoked_before + INSTANCES, 20, "the three invocations")
    finally:
        sim.remove_fault(slow)
    assert cluster.logged("mirror round:") - rounds_before == 1


def _request_round(cluster: Cluster) -> Any:
    def request(index: int) -> int:
        return httpx.post(
            f"{cluster.instances[index].base_url}/admin/functions/mirror_round",
            json={"input": '{"round": "users"}'},
            headers={"x-functions-key": cluster.master_key},
            timeout=10,
        ).status_code

    return request


def test_cache_invalidation_reaches_every_instance_within_the_l1_bound(cluster: Cluster, sim: SimControl) -> None:
    _subscribed(cluster, sim)
    mailbox = sim.users()[0]["id"]
    for index in range(INSTANCES):  # every instance has the mailbox's first page in its memory (L1)
        _messages(cluster.client(index), mailbox)
        assert _messages(cluster.client(index), mailbox).headers["X-Cache"].startswith("hit")

    (created,) = sim.create_message(mailbox, subject="seen everywhere")
    sim.wait_deliveries_idle()
    _sink(cluster).wait_for_matching({created["id"]}, timeout=30)
    wait_until(lambda: _idle(cluster, "process_notifications"), 10, "processing to finish")
    time.sleep(L1_BOUND_SECONDS)  # after the bound, no instance may serve the old page from memory
    for index in range(INSTANCES):
        page = _messages(cluster.client(index), mailbox)
        assert page.json()["items"][0]["id"] == created["id"], (index, page.headers.get("X-Cache"))
