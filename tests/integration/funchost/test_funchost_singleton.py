"""Timer singleton locks across harness processes: one instance fires a schedule; another takes over when
the holder stops (lease released) or dies (lease expired)."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path

import pytest

from devtools.azurite import Azurite
from tests.fixtures.funchost import FuncHostLauncher, FuncHostProcess
from tests.integration.funchost._support import SAMPLE_APP, records, wait_for

pytestmark = pytest.mark.integration


def _start_instances(
    factory: FuncHostLauncher, azurite: Azurite, root: Path, count: int, host_id: str
) -> list[tuple[FuncHostProcess, Path]]:
    """``count`` harnesses of the sample app on one storage account; each records its runs in its own folder."""
    azurite.start()
    started = []
    for index in range(count):
        folder = root / f"instance-{index}"
        folder.mkdir()
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "AzureFunctionsWebHost__hostid": host_id,
            # The host's override of host.json by app setting: non-holders retry the lock every second.
            "AzureFunctionsJobHost__singleton__listenerLockRecoveryPollingInterval": "00:00:01",
            "AzureFunctionsJobHost__singleton__listenerLockPeriod": "00:00:15",
            "SAMPLE_QUEUE": "funchost-singleton-unused",
            "TICK_SCHEDULE": "*/1 * * * * *",
            "SAMPLE_RECORD_DIR": str(folder),
        }
        started.append((factory(SAMPLE_APP, env), folder))
    return started


def _firing(instances: list[tuple[FuncHostProcess, Path]], since: dict[Path, int]) -> list[int]:
    """Indexes of the instances that recorded a tick after ``since`` (counts per folder)."""
    return [i for i, (_, folder) in enumerate(instances) if len(records(folder, "tick")) > since.get(folder, 0)]


def _counts(instances: list[tuple[FuncHostProcess, Path]]) -> dict[Path, int]:
    return {folder: len(records(folder, "tick")) for _, folder in instances}


def test_one_instance_fires_and_others_take_over_on_stop_and_on_crash(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    instances = _start_instances(funchost_factory, azurite, tmp_path, 3, "singleton-" + secrets.token_hex(6))
    (holder,) = wait_for(lambda: _firing(instances, {}), what="a first tick")
    seen = wait_for(lambda: _counts(instances)[instances[holder][1]] >= 3 and _counts(instances), what="3 ticks")
    assert _firing(instances, {}) == [holder], "a second instance fired the schedule"
    # run_on_startup ran once, on the holder only.
    assert [len(records(folder, "yearly")) for _, folder in instances] == [int(i == holder) for i in range(3)]

    assert instances[holder][0].stop() == 0  # releases the lease
    instances[holder][0].wait_for_output("Singleton lock released")
    (successor,) = wait_for(lambda: _firing(instances, seen), timeout=10, what="a successor after a stop")
    assert successor != holder

    seen = _counts(instances)
    instances[successor][0].send_signal(signal.SIGKILL)  # the lease stays until it expires (15 s)
    instances[successor][0].process.wait(timeout=10)
    (last,) = wait_for(lambda: _firing(instances, _counts_after_kill(instances, seen, successor)), timeout=25,
                       what="a successor after a crash")  # fmt: skip
    assert last not in (holder, successor)


def _counts_after_kill(
    instances: list[tuple[FuncHostProcess, Path]], seen: dict[Path, int], dead: int
) -> dict[Path, int]:
    """The dead instance's ticks no longer move; count everything it wrote as seen."""
    return {**seen, instances[dead][1]: len(records(instances[dead][1], "tick"))}


def test_instances_of_different_apps_each_fire(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """The lock is per host ID: two apps (different IDs) on one storage account both run their timers."""
    first = _start_instances(funchost_factory, azurite, _folder(tmp_path, "a"), 1, "app-a-" + secrets.token_hex(6))
    second = _start_instances(funchost_factory, azurite, _folder(tmp_path, "b"), 1, "app-b-" + secrets.token_hex(6))
    both = first + second
    wait_for(lambda: _firing(both, {}) == [0, 1], what="ticks from both apps")


def _folder(root: Path, name: str) -> Path:
    (root / name).mkdir()
    return root / name
