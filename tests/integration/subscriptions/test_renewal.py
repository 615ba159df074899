"""Renewal on simulated time: subscriptions never lapse, races renew once, outages are recorded and healed."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from devtools.graphsim.client import SimControl
from tests.integration.subscriptions.conftest import SimClock, Stack


def patches(sim: SimControl) -> list[str]:
    return [r["path"] for r in sim.requests(route="PATCH /subscriptions/{id}")]


async def test_renewal_every_12_hours_keeps_subscriptions_alive_for_30_days(
    make_stack: Any, graphsim: SimControl, sim_clock: SimClock, mailbox: str
) -> None:
    """Mail (7-day maximum) and users (29-day maximum) subscriptions exist at every step of 30 days,
    each renewed only when under the threshold, never recreated."""
    stack: Stack = make_stack(f"users=updated; users/{mailbox}/messages=created")
    await stack.service.reconcile()
    ids = {r.id for r in await stack.registry.list_all()}

    for _ in range(60):
        sim_clock.advance(timedelta(hours=12))
        result = await stack.service.renew_due()
        assert result.failed == 0
        assert result.recreated == 0
        assert {s["id"] for s in graphsim.subscriptions()} == ids

    renewals = patches(graphsim)
    mail_id = next(r.id for r in await stack.registry.list_all() if r.resource.endswith("/messages"))
    assert 5 <= sum(mail_id in p for p in renewals) <= 7  # about every 5 days (7-day life, 2-day threshold)
    assert len(renewals) - sum(mail_id in p for p in renewals) == 1  # users: once, near day 27
    for record in await stack.registry.list_all():
        assert record.status == "active"
        assert record.renewed_at is not None
        assert record.expiration - sim_clock() > timedelta(days=2)


async def test_two_renewal_runs_at_once_patch_each_subscription_once(
    make_stack: Any, graphsim: SimControl, sim_clock: SimClock, mailbox: str
) -> None:
    """Racing timer runs (two instances) share the work: the lease and the re-read under it."""
    desired = f"users=updated; users/{mailbox}/messages=created; users/{mailbox}/mailFolders/inbox/messages=created"
    stacks: list[Stack] = [make_stack(desired) for _ in range(2)]
    await stacks[0].service.reconcile()
    sim_clock.advance(timedelta(days=6))  # both mail subscriptions are due, the users one is not
    graphsim.clear_requests()

    results = await asyncio.gather(*(s.service.renew_due() for s in stacks))

    renewed = patches(graphsim)
    assert len(renewed) == 2
    assert len(set(renewed)) == 2
    assert sum(r.renewed for r in results) == 2
    assert sum(r.failed + r.recreated for r in results) == 0


async def test_graph_outage_during_renewal_is_recorded_and_healed_on_the_next_tick(
    make_stack: Any, graphsim: SimControl, sim_clock: SimClock, mailbox: str, caplog: pytest.LogCaptureFixture
) -> None:
    """503s: the record shows status and last error, an ERROR is logged (expiry near, no secret);
    the next tick after Graph recovers renews it and clears the error."""
    stack: Stack = make_stack(f"users/{mailbox}/messages=created")
    await stack.service.reconcile()
    [record] = await stack.registry.list_all()
    sim_clock.advance(timedelta(days=6, hours=12))
    graphsim.add_fault(r"^/subscriptions", 503, retry_after=0)

    with caplog.at_level(logging.WARNING):
        result = await stack.service.renew_due()

    assert result.failed == 1
    failed = await stack.registry.get(record.id)
    assert failed is not None
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert "unavailable" in failed.last_error.lower()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and record.id in r.getMessage()]
    assert errors
    assert all(record.client_state.reveal() not in r.getMessage() for r in caplog.records)

    graphsim.clear_faults()
    sim_clock.advance(timedelta(hours=1))
    result = await stack.service.renew_due()

    assert result.renewed == 1
    healed = await stack.registry.get(record.id)
    assert healed is not None
    assert (healed.status, healed.last_error) == ("active", None)
    assert healed.expiration - sim_clock() > timedelta(days=6)
    assert [s["id"] for s in graphsim.subscriptions()] == [record.id]


async def test_renew_now_renews_a_subscription_that_is_not_due(make_stack: Any, graphsim: SimControl) -> None:
    """The management action renews on demand and returns the view (no clientState in it)."""
    stack: Stack = make_stack("users=updated")
    await stack.service.reconcile()
    [record] = await stack.registry.list_all()

    view = await stack.service.renew_now(record.id)

    assert view is not None
    assert view.renewed_at is not None
    assert "clientState" not in str(view.to_dict())
    assert record.client_state.reveal() not in repr(view)
    assert len(patches(graphsim)) == 1
    assert await stack.service.renew_now("no-such-subscription") is None
