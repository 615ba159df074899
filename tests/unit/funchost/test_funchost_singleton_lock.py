"""The timer singleton lock's decisions with a fake lease (when it is held, kept through a short outage,
and given up), and the settings that configure it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.storage.blob.aio import ContainerClient

from devtools.funchost.config import ConfigError, HostConfig, host_id, with_setting_overrides
from devtools.funchost.singleton import ListenerLock, lock_blob_name


class FakeLease:
    """Answers acquire/renew from scripted outcomes (None: success)."""

    def __init__(self, acquire: list[Exception | None], renew: list[Exception | None]) -> None:
        self.acquire_outcomes, self.renew_outcomes = acquire, renew
        self.renewals = 0

    async def acquire(self, **_: Any) -> None:
        if outcome := (self.acquire_outcomes.pop(0) if self.acquire_outcomes else HttpResponseError("held")):
            raise outcome

    async def renew(self) -> None:
        self.renewals += 1
        if outcome := (self.renew_outcomes.pop(0) if self.renew_outcomes else None):
            raise outcome

    async def release(self) -> None:
        return None


def _lock(lease: FakeLease, events: list[str], lost: asyncio.Event, period: float) -> ListenerLock:
    container = ContainerClient("http://127.0.0.1:9/devstoreaccount1", "azure-webjobs-hosts")
    lock = ListenerLock(
        container,
        lock_blob_name("app", "tick"),
        period=period,
        recovery_interval=0.01,
        on_acquired=lambda: events.append("acquired"),
        on_lost=lambda: (events.append("lost"), lost.set()),
    )
    lock._lease = lease  # type: ignore[assignment]

    async def no_blob() -> None:
        return None

    lock._ensure_blob = no_blob  # type: ignore[method-assign]
    return lock


def _conflict() -> HttpResponseError:
    error = HttpResponseError(message="lease lost")
    error.status_code = 409
    return error


async def test_a_short_outage_keeps_the_lock_and_a_lost_lease_gives_it_up() -> None:
    assert lock_blob_name("app", "tick") == "locks/app/Host.Functions.tick.Listener"
    events: list[str] = []
    lost = asyncio.Event()
    unreachable = ServiceRequestError("connection refused")
    lease = FakeLease(acquire=[None], renew=[unreachable, unreachable, _conflict()])
    lock = _lock(lease, events, lost, period=2.4)  # renewals every 1.2 s, every 0.4 s after a failure
    lock.start()
    await asyncio.wait_for(lost.wait(), 10)
    await lock.stop(1.0)
    # Two renewals failed for want of Storage within the lease period: still held; the 409 said it is gone.
    assert events == ["acquired", "lost"]
    assert lease.renewals == 3


async def test_a_lease_that_cannot_be_renewed_for_a_whole_period_is_given_up() -> None:
    events: list[str] = []
    lost = asyncio.Event()
    lease = FakeLease(acquire=[None], renew=[ServiceRequestError("down")] * 50)
    lock = _lock(lease, events, lost, period=0.3)
    lock.start()
    await asyncio.wait_for(lost.wait(), 10)
    await lock.stop(1.0)
    assert events == ["acquired", "lost"]
    assert lease.renewals >= 2


def test_app_settings_override_host_json_and_name_the_host() -> None:
    """``AzureFunctionsJobHost__`` settings override host.json (case-insensitive paths, new sections made);
    the host ID comes from ``AzureFunctionsWebHost__hostid`` or the app folder's name (32 characters)."""
    host_json = {"extensions": {"queues": {"batchSize": 4}}}
    env = {
        "AzureFunctionsJobHost__Extensions__Queues__batchsize": "8",
        "AzureFunctionsJobHost__singleton__listenerLockPeriod": "00:00:15",
        "OTHER": "x",
    }
    merged = with_setting_overrides(host_json, env)
    assert merged == {"extensions": {"queues": {"batchSize": "8"}}, "singleton": {"listenerLockPeriod": "00:00:15"}}
    assert host_json == {"extensions": {"queues": {"batchSize": 4}}}  # the original is untouched
    config = HostConfig.from_json(merged)
    assert (config.queues.batch_size, config.singleton.listener_lock_period) == (8, 15.0)
    with pytest.raises(ConfigError):
        HostConfig.from_json({"singleton": {"listenerLockPeriod": "00:00:05"}})  # shorter than any blob lease

    assert host_id({"AzureFunctionsWebHost__hostid": "Scale-1"}, Path("/apps/x")) == "scale-1"
    long_name = Path("/apps/My_Function.App-with-a-really-long-name-indeed")
    assert host_id({}, long_name) == "my-function-app-with-a-really-lo"
