"""``python -m devtools.run`` (what ``./dev run`` executes) as a subprocess: Azurite, the simulator (or an
external Graph), the app under the harness, and the supervision of those children.

Each run uses free ports and its own Azurite data folder, so it never meets a developer's ``./dev run``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil  # installed with azure-monitor-opentelemetry; lists the run command's children
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from devtools.azurite import connection_string, free_port
from devtools.graphsim.client import SimControl
from devtools.identity import IdentityEndpoint
from devtools.processes import stop_process
from devtools.run import load_values
from tests.fixtures.graphsim import start_graphsim, stop_graphsim
from tests.fixtures.identity import OAuthStorage
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "local.settings.sample.json"
STARTUP_TIMEOUT_S = 60.0
MAILBOX = "1a3d1fa7-bc89-40a9-a3b8-c1e9392456de"  # in the sample's GRAPH_SUBSCRIPTIONS; seed 42's first user


class RunCommand:
    """One ``python -m devtools.run`` process; its merged output is collected line by line."""

    def __init__(self, port: int, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.data_dir = data_dir
        self.base_url = f"http://127.0.0.1:{port}"
        # The sample's settings decide, not whatever this test process has in its environment.
        base_env = {k: v for k, v in os.environ.items() if k not in load_values(SAMPLE)}
        isolated = ["--free-ports", "--port", str(port), "--data-dir", str(data_dir), "--settings", str(SAMPLE)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.run", *isolated, *extra],
            cwd=ROOT,
            env={**base_env, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT_S) -> re.Match[str]:
        """The first output line matching ``pattern`` (fails with the output tail if none comes in time)."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := compiled.search(line):
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and seen == len(self.lines)):
                    tail = "\n".join(self.lines[-40:])
                    pytest.fail(f"no line matching {pattern!r} (exit {self.process.poll()}):\n{tail}")
                self._changed.wait(min(remaining, 0.5))

    def started(self) -> dict[str, str]:
        """Wait for the banner; its URLs (graph, storage ports, webhook)."""
        self.wait_for(r"^App running at ")
        graph = self.wait_for(r"^  graph:\s+(?:Graph simulator at )?(\S+)").group(1)
        storage = self.wait_for(r"^  storage:.* ports (\d+)/(\d+)/(\d+)")
        webhook = self.wait_for(r"^  webhook:\s+(\S+)").group(1)
        ports = [int(p) for p in storage.groups()]
        return {"graph": graph, "storage": connection_string("127.0.0.1", *ports), "webhook": webhook}

    def children(self, marker: str) -> list[psutil.Process]:
        """Live descendants whose command line mentions ``marker``."""
        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if marker in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found

    def stop(self) -> int:
        return stop_process(self.process, timeout=30)


@pytest.fixture(name="run_command")
def _run_command(tmp_path: Path) -> Iterator[Callable[..., RunCommand]]:
    """Start run commands; each is stopped (SIGTERM, then SIGKILL) after the test."""
    runs: list[RunCommand] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> RunCommand:
        run = RunCommand(free_port(), tmp_path / f"azurite-{len(runs)}", *extra, env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        survivors = psutil.Process(run.process.pid).children(recursive=True) if run.process.poll() is None else []
        run.stop()
        for child in survivors:  # only if the run command itself had to be killed
            if child.is_running():
                child.kill()


def _queued_events(storage: str) -> int:
    with QueueClient.from_connection_string(storage, "graph-events") as queue:
        try:
            return len(queue.peek_messages(max_messages=32))
        except ResourceNotFoundError:  # not created yet
            return 0


def _x_cache(base_url: str) -> str | None:
    response = httpx.get(
        f"{base_url}/api/users/{MAILBOX}", headers={"x-functions-key": "local-function-key"}, timeout=30
    )
    return response.headers.get("X-Cache")


def test_run_on_another_port_subscribes_itself_there(run_command: Callable[..., RunCommand]) -> None:
    """``--port N``: the sample's loopback WEBHOOK_BASE_URL follows N, so the startup renewal creates both
    subscriptions (the simulator's validation reaches this app) and a change in Graph arrives as an event."""
    run = run_command()
    urls = run.started()
    assert urls["webhook"] == f"{run.base_url}/api"
    with SimControl(urls["graph"].removesuffix("/v1.0")) as sim:
        subscriptions = wait_until(lambda: len(sim.subscriptions()) == 2 and sim.subscriptions())
        assert subscriptions, "the app did not subscribe itself"
        assert {s["notificationUrl"] for s in subscriptions} == {f"{run.base_url}/api/notifications"}
        # The sample subscribes to users, so the directory is mirrored: once its first fill is done (users are
        # then served from it), a change is published by the delta round its notification triggers.
        assert wait_until(lambda: _x_cache(run.base_url) == "mirror", timeout=60), "the mirror was not filled"
        sim.update_user(MAILBOX, jobTitle="Port Tester")
        assert wait_until(lambda: _queued_events(urls["storage"]) > 0), "no event reached graph-events"


@pytest.mark.parametrize("how", ["--graph-url", "GRAPH_BASE_URL"])
def test_run_targets_an_external_graph(run_command: Callable[..., RunCommand], how: str) -> None:
    """A Graph URL given by option or setting is used as is: no simulator is started, the app reads users
    from that endpoint and subscribes itself there."""
    external = start_graphsim()
    try:
        if how == "--graph-url":
            run = run_command("--graph-url", external.base_url)
        else:
            run = run_command(env={"GRAPH_BASE_URL": external.base_url})
        urls = run.started()
        assert urls["graph"] == external.base_url
        assert run.children("devtools.graphsim") == []
        with SimControl(external.root_url) as sim:
            response = httpx.get(
                f"{run.base_url}/api/users/{MAILBOX}", headers={"x-functions-key": "local-function-key"}, timeout=30
            )
            assert response.status_code == 200, response.text
            assert response.json()["id"] == MAILBOX
            # Read from that endpoint: by id, or (the sample mirrors the directory) through the users delta.
            assert wait_until(lambda: sim.count("GET /users/{id}") + sim.count("GET /users/delta") > 0)
            assert wait_until(lambda: len(sim.subscriptions()) == 2), "the app did not subscribe itself there"
    finally:
        stop_graphsim(external.process)


def _saved_on_disk(data_dir: Path, database: str, names: list[str]) -> bool:
    """Azurite writes its metadata to disk every 5 s: True once ``names`` all appear in that file."""
    path = data_dir / f"__azurite_db_{database}__.json"
    text = path.read_text(errors="replace") if path.exists() else ""
    return all(name in text for name in names)


def _status_with_subscriptions(admin: httpx.Client, count: int) -> dict[str, Any] | None:
    document: dict[str, Any] = admin.get("/api/status").json()
    return document if len(document["subscriptions"] or []) == count else None


def test_azurite_dying_is_reported_and_restarted_with_its_data(run_command: Callable[..., RunCommand]) -> None:
    """Killing Azurite under a running app: the run command says so, starts it again on the same ports and
    data folder, and the app reads its stored subscriptions and queues again."""
    run = run_command()
    run.started()
    with httpx.Client(base_url=run.base_url, headers={"x-functions-key": "local-master-key"}, timeout=30) as admin:
        status = wait_until(lambda: _status_with_subscriptions(admin, 2))
        assert status, "the app did not subscribe itself"
        subscription_ids = [s["id"] for s in status["subscriptions"]]
        queue_names = [q["name"] for q in status["queues"]]
        # What was written in the last 5 s before a crash is lost (Azurite's autosave): wait until it is on disk.
        assert wait_until(lambda: _saved_on_disk(run.data_dir, "table", subscription_ids), 20)
        assert wait_until(lambda: _saved_on_disk(run.data_dir, "queue", queue_names), 20)
        [azurite] = run.children("azurite")
        azurite.send_signal(signal.SIGKILL)
        run.wait_for(r"^!! Azurite stopped unexpectedly .*restarting it on the same ports and data folder", 30)
        run.wait_for(r"^   Azurite is back", 30)
        [restarted] = run.children("azurite")
        assert restarted.pid != azurite.pid
        # The app's clients reconnect on their next calls; a status read right after may still see the gap.
        status = wait_until(lambda: (doc := admin.get("/api/status").json()) and not doc["errors"] and doc, 20)
        assert status, admin.get("/api/status").json()["errors"]
        assert sorted(s["id"] for s in status["subscriptions"]) == sorted(subscription_ids)
    assert run.process.poll() is None


def test_simulator_dying_stops_everything_with_status_1(run_command: Callable[..., RunCommand]) -> None:
    """The simulator's state is in memory, so its death ends the run: a message, exit 1, no child left."""
    run = run_command()
    run.started()
    children = psutil.Process(run.process.pid).children(recursive=True)
    [simulator] = run.children("devtools.graphsim")
    simulator.send_signal(signal.SIGKILL)
    run.wait_for(r"^!! the Graph simulator exited with status -9; stopping everything", 30)
    assert run.process.wait(timeout=45) == 1
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_identity_storage_settings_win_over_the_run_commands_azurite(
    run_command: Callable[..., RunCommand], oauth_storage: OAuthStorage, tmp_path: Path
) -> None:
    """A settings file with identity-based storage (and the sample's connection string left in it): the run
    command starts no Azurite and drops the connection string, so the app starts on the identity settings and
    /api/health reaches Storage with tokens from the managed-identity endpoint."""
    values = {**load_values(SAMPLE), **oauth_storage.settings(), "STORAGE_TABLE_PREFIX": "r" + os.urandom(5).hex()}
    settings_file = tmp_path / "identity.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    with IdentityEndpoint() as endpoint:
        env = {**endpoint.environment, "SSL_CERT_FILE": str(oauth_storage.ca_file)}
        run = run_command("--settings", str(settings_file), env=env)
        run.wait_for(r"App running at")
        storage = run.wait_for(r"storage: +(.*)").group(1)
        assert storage.startswith("identity-based (AzureWebJobsStorage__blobServiceUri"), storage
        assert "connection string is ignored" in storage
        assert run.children("azurite") == []
        health = httpx.get(f"{run.base_url}/api/health", timeout=30)
        assert health.status_code == 200, health.text
        assert {r["resource"] for r in endpoint.requests} == {"https://storage.azure.com"}
