"""A fleet's cold subscribe with Storage stopped in the middle of it (a private Azurite, SIGTERM, restarted):
the run fails the members it could not record and takes back on Graph what Storage refused, so after the
timer's next run (reconcile, then renewal) every member has exactly one subscription, known to both Graph
and the registry."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from devtools.azurite import Azurite
from devtools.graphsim.client import SimControl
from shared.storage import Tables
from shared.wiring import STORAGE_CLIENT_OPTIONS
from tests.integration.subscriptions.conftest import SimClock, Stack

pytestmark = pytest.mark.integration

MEMBERS = 24


@pytest.fixture(name="private_azurite", scope="module")
def _private_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(location=Path(tmp_path_factory.mktemp("azurite-fleet")))
    server.start()
    try:
        yield server
    finally:
        server.stop(remove_data=False)


@pytest.fixture(name="tables")
async def _tables(private_azurite: Azurite, unique_name: str) -> AsyncIterator[Tables]:
    """This module's stacks keep their subscription state on the private Azurite (as the app builds clients)."""
    service = TableServiceClient.from_connection_string(
        private_azurite.connection_string,
        retry_total=2,
        retry_backoff_factor=0.1,
        retry_backoff_max=1,
        **STORAGE_CLIENT_OPTIONS,
    )
    yield Tables(service, unique_name)
    await service.close()


async def test_storage_stopped_mid_subscribe_leaves_no_orphan_and_no_duplicate(
    make_stack: Any, graphsim: SimControl, private_azurite: Azurite, sim_clock: SimClock
) -> None:
    users = [u["id"] for u in graphsim.users() if u["accountEnabled"]][:MEMBERS]
    group = graphsim.create_group(members=users)["id"]
    graphsim.add_fault(r"^/subscriptions$", method="POST", latency_ms=150)  # creations in flight when it stops
    stack: Stack = make_stack(f"mailboxes(group={group})/messages=created")
    await stack.registry.list_all()  # tables exist before the outage

    async def stop_after_some_creations() -> int:
        live = 0
        while live < 8:  # the control API is synchronous: poll it off the loop the reconcile runs on
            live = len(await asyncio.to_thread(graphsim.subscriptions))
        await asyncio.to_thread(private_azurite.stop, False)
        return live

    stopper = asyncio.create_task(stop_after_some_creations())
    first = await stack.service.reconcile()
    live_at_stop = await stopper
    await asyncio.to_thread(private_azurite.start)

    assert 8 <= live_at_stop < MEMBERS, "the outage began in the middle of the run"
    assert first.failed, "some members could not be recorded"
    assert len(first.created) + len(first.failed) == MEMBERS

    # The timer's next run, 30 minutes on (the leases the outage kept from being released have expired):
    # reconcile, then renewal (whose check against Graph's list recreates a subscription whose record was
    # written but whose answer was lost, and so was not taken back).
    sim_clock.advance(timedelta(minutes=30))
    second = await stack.service.reconcile()
    assert not second.failed
    await stack.service.renew_due()
    live = graphsim.subscriptions()
    per_mailbox = Counter(s["resource"] for s in live)
    assert sorted(per_mailbox) == sorted(f"users/{u}/messages" for u in users)
    assert set(per_mailbox.values()) == {1}  # no duplicate, and no orphan left beside a new one
    assert {s["id"] for s in live} == {r.id for r in await stack.registry.list_all()}
