"""The half-open probe across two OS processes sharing one Azurite breakers table (``breaker_worker.py``):
exactly one probe however long it runs, and a SIGKILLed prober blocks the other process for at most one
lease period. What the processes did comes from the JSON lines they append to one file."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient, TableServiceClient

from devtools.processes import stop_process
from shared.resilience import TableBreakerStore
from shared.resilience.breaker_store import Values
from shared.storage import safe_key

pytestmark = pytest.mark.integration

KEY = "graph-mail"
REPO = Path(__file__).resolve().parents[3]
Event = dict[str, Any]


@pytest.fixture(name="table")
async def _table(storage_connection_string: str, unique_name: str) -> AsyncIterator[TableClient]:
    """A fresh table whose breaker is half-open (open, with its open period over), deleted afterwards."""
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        await service.create_table(unique_name)
        async with TableClient.from_connection_string(storage_connection_string, unique_name) as client:
            store = TableBreakerStore(client)
            now = time.time()
            state: Values = {"State": "open", "Generation": 1, "Since": now - 20, "OpenUntil": now - 10}
            await store.insert(safe_key(KEY), "state", {**state, "Trips": 1, "TotalTrips": 1})
            yield client
        await service.delete_table(unique_name)


class Workers:
    """Starts worker processes on the test's table and reads the events they write."""

    def __init__(self, connection: str, table: str, directory: Path) -> None:
        self.events_path = directory / "events.jsonl"
        self.events_path.touch()
        self._connection, self._table = connection, table
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *, lease: float, probe_seconds: float) -> None:
        config = {
            "name": name,
            "connection": self._connection,
            "table": self._table,
            "key": KEY,
            "events": str(self.events_path),
            "lease": lease,
            "probe_seconds": probe_seconds,
            "callers": 4,
            "pause": 0.05,
            "deadline": 20.0,
        }
        command = [sys.executable, "-m", "tests.integration.resilience.breaker_worker", json.dumps(config)]
        self.processes[name] = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE)

    def go(self, name: str) -> None:
        stdin = self.processes[name].stdin
        assert stdin is not None
        stdin.write(b"go\n")
        stdin.flush()

    def events(self, event: str | None = None, process: str | None = None) -> list[Event]:
        lines = [json.loads(line) for line in self.events_path.read_text().splitlines() if line]
        return [e for e in lines if event in (None, e["event"]) and process in (None, e["process"])]

    def from_both(self, event: str) -> list[Event]:
        """The ``event`` lines once both workers wrote one, else none."""
        found = self.events(event)
        return found if {e["process"] for e in found} == {"a", "b"} else []

    async def until(self, what: str, found: Callable[[], list[Event]], timeout: float = 15.0) -> list[Event]:
        """Poll the events until ``found`` returns some; fail if a worker died or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while not (hits := found()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            for name, process in self.processes.items():
                assert process.poll() in (None, 0, -signal.SIGKILL), f"worker {name} failed: {process.returncode}"
            await asyncio.sleep(0.02)
        return hits

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process, timeout=2.0)


@pytest.fixture(name="workers")
def _workers(storage_connection_string: str, unique_name: str, tmp_path: Path) -> Iterator[Workers]:
    workers = Workers(storage_connection_string, unique_name, tmp_path)
    yield workers
    workers.stop()


async def test_one_probe_across_two_processes_however_long_it_runs(table: TableClient, workers: Workers) -> None:
    """Two processes, four callers each, hammer the half-open breaker; the probe runs 3.5 lease periods.
    Exactly one call starts before the probe ends, and the other process is still refused well past the
    lease the probe took first (it was renewed)."""
    lease, probe = 1.0, 3.5
    for name in ("a", "b"):
        workers.start(name, lease=lease, probe_seconds=probe)
    await workers.until("both workers ready", lambda: workers.from_both("ready"))
    workers.go("a")
    workers.go("b")
    await workers.until("both workers done", lambda: workers.from_both("exit"))
    assert all(process.wait(timeout=5) == 0 for process in workers.processes.values())

    first_end = min(e["wall"] for e in workers.events("end"))
    probes = [e for e in workers.events("start") if e["wall"] < first_end]
    assert len(probes) == 1, probes
    assert [e["slow"] for e in workers.events("start")].count(True) == 1
    prober = probes[0]["process"]
    other = "b" if prober == "a" else "a"
    refused_late = [
        e for e in workers.events("refused", other) if probes[0]["wall"] + 2 * lease < e["wall"] < first_end
    ]
    assert refused_late, "the other process stopped competing before the probe's first lease ran out"


async def test_a_killed_prober_is_taken_over_within_one_lease(table: TableClient, workers: Workers) -> None:
    """Process a probes (for ever) and renews its lease; b is refused meanwhile. a is SIGKILLed after two
    lease periods: b probes no earlier than the lease a last wrote expires, and within one lease period
    (plus a margin for b's polling) of the kill."""
    lease, margin = 1.5, 3.0  # the margin absorbs b's polling and a loaded 2-core CI machine
    workers.start("a", lease=lease, probe_seconds=60.0)
    workers.start("b", lease=lease, probe_seconds=0.2)
    await workers.until("both workers ready", lambda: workers.from_both("ready"))
    workers.go("a")
    (a_probe,) = await workers.until("a's probe", lambda: workers.events("start", "a"))
    workers.go("b")
    await workers.until(
        "b refused after a's first lease ran out",
        lambda: [e for e in workers.events("refused", "b") if e["wall"] > a_probe["wall"] + 2 * lease],
    )
    assert len(workers.events("start", "a")) == 1  # a's own callers did not re-probe either
    workers.processes["a"].send_signal(signal.SIGKILL)
    killed_at = time.time()
    workers.processes["a"].wait(timeout=5)
    await asyncio.sleep(0.1)  # let a request a had in flight land before reading what it left
    lease_row = await TableBreakerStore(table).read(safe_key(KEY), "lease")
    assert lease_row is not None
    assert lease_row.values["Holder"] == "a"
    expires = float(lease_row.values["ExpiresAt"])

    (b_probe,) = await workers.until("b's probe", lambda: workers.events("start", "b"))
    assert workers.processes["b"].wait(timeout=5) == 0
    assert b_probe["slow"]  # nothing had ended: it was the half-open probe
    assert b_probe["wall"] > killed_at  # no takeover while a lived
    assert b_probe["t"] >= expires - 0.05  # not before a's lease ran out (0.05: the clock estimate)
    assert b_probe["wall"] <= killed_at + lease + margin
    assert len(workers.events("start")) == 2
