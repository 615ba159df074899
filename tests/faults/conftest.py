"""The storage-fault matrix's shared stack (a test-private Azurite, the app's tables and subscription) and
its report: per-cell results go to ``tests/artifacts/storage-fault-matrix.json`` and a table is printed at
the end of the run."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.azurite import Azurite
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import ROOT, RunningApp, app_env
from tests.e2e.pipeline import subscribe
from tests.faults.matrix import CellResult, FaultStack, Subscription, table, write_results
from tests.fixtures.funchost import FuncHostLauncher
from tests.fixtures.graphsim import GraphSimServer

ARTIFACT = ROOT / "tests" / "artifacts" / "storage-fault-matrix.json"
RESULTS: list[CellResult] = []


@pytest.fixture(name="fault_stack", scope="module")
def _fault_stack(graphsim_server: GraphSimServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A private Azurite with a fixed data folder (the session's Azurite is never stopped), one set of app
    tables with a subscription that exists both in the simulator and in the app's registry, and a sentinel
    row and message to prove each SIGTERM restart kept the data."""
    workdir: Path = tmp_path_factory.mktemp("faults")
    azurite = Azurite(location=workdir / "azurite-data")
    launcher = FuncHostLauncher(workdir)
    azurite.start()
    try:
        prefix = "f" + uuid.uuid4().hex[:10]
        env = app_env(
            azurite.connection_string,
            graphsim_server.base_url,
            STORAGE_TABLE_PREFIX=prefix,
            # A harness started while Storage is down takes its timers' singleton locks (blob leases) once it
            # is back, as the host does; poll for them every second instead of the host's minute.
            AzureFunctionsJobHost__singleton__listenerLockRecoveryPollingInterval="00:00:01",
        )
        with SimControl(graphsim_server.root_url) as sim:
            user_ids = [u["id"] for u in sim.users()[:10]]
        # The simulator validates a new subscription's notificationUrl, so a harness must be up for that.
        bootstrap = launcher(ROOT, env)
        with httpx.Client(base_url=bootstrap.base_url, timeout=30) as client:
            app = RunningApp(bootstrap, client, env)
            subscription_id, client_state = subscribe(
                app, graphsim_server.base_url, f"users/{user_ids[0]}/messages", "created,updated,deleted"
            )
        bootstrap.stop()
        stack = FaultStack(
            azurite,
            launcher,
            env,
            Subscription(subscription_id, client_state),
            user_ids,
            ("faultsentinel", secrets.token_hex(8)),
            ARTIFACT.parent / "storage-fault-logs",
        )
        stack.write_sentinel()
        yield stack
    finally:
        launcher.close()
        azurite.stop(remove_data=False)


@pytest.fixture(name="record_result")
def _record_result() -> Iterator[list[CellResult]]:
    """Where a cell puts its result; written to the artifact right away, so a partial run still reports."""
    found: list[CellResult] = []
    yield found
    RESULTS.extend(found)
    write_results(RESULTS, ARTIFACT)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the matrix as a Markdown table (for docs/reliability.md)."""
    if RESULTS:
        terminalreporter.section("storage-fault matrix")
        terminalreporter.write_line(table(RESULTS))
        for result in RESULTS:
            for violation in result.violations:
                terminalreporter.write_line(f"{result.cell}: {violation}")
        terminalreporter.write_line(f"per-cell details: {ARTIFACT}")
