"""The README's run command: Azurite + (unless Graph is elsewhere) the Graph simulator + the app.

The app runs under ``func start`` when Azure Functions Core Tools are on PATH, else under the local
harness (``devtools.funchost``). Settings come from ``local.settings.json`` if present, else from
``local.settings.sample.json`` (the environment wins over both); the storage connection string is pointed
at the Azurite started here, unless identity-based storage settings (``AzureWebJobsStorage__*`` with a value)
are given: then those win, no Azurite is started and any connection string is dropped (the app refuses the
two shapes together). A loopback ``WEBHOOK_BASE_URL`` on the default port follows ``--port``.
Graph: the simulator is started unless ``GRAPH_AUTH_MODE`` names real credentials, ``--graph-url`` is
given, or ``GRAPH_BASE_URL`` is set to something other than the sample's simulator URL.
The children are supervised: Azurite is restarted (on the same ports and data folder, a bounded number of
times) when it dies; the simulator or the app dying stops everything with exit status 1.
Ctrl-C (or SIGTERM) stops everything this command started (exit status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devtools.azurite import ROOT, Azurite, free_port
from devtools.processes import stop_process
from shared.setting_specs import flag, is_loopback_url

REAL_GRAPH_MODES = {"client_secret", "certificate", "managed_identity"}
DEFAULT_APP_PORT = 7071
DEFAULT_STORAGE_PORTS = (10000, 10001, 10002)
SAMPLE_GRAPH_URL = "http://127.0.0.1:8070/v1.0"  # local.settings.sample.json: "start the simulator here"
AZURITE_MAX_RESTARTS = 3
AZURITE_RESTART_WINDOW_S = 600.0
IDENTITY_STORAGE_PREFIX = "AzureWebJobsStorage__"


class StartupFailed(RuntimeError):
    """Something this command started did not come up (the message says what)."""


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while waiting for a child to come up."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with contextlib.suppress(OSError), socket.create_connection((parts.hostname or "", port), timeout=2):
        return True
    return False


def load_values(settings_file: Path) -> dict[str, str]:
    """``Values`` of a local.settings-style file, as strings."""
    data = json.loads(settings_file.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.get("Values", {}).items()}


def identity_storage(env: dict[str, str]) -> dict[str, str]:
    """The identity-based ``AzureWebJobsStorage__*`` settings that have a value (the samples list them empty)."""
    return {k: v for k, v in env.items() if k.startswith(IDENTITY_STORAGE_PREFIX) and v.strip()}


def choose_storage(env: dict[str, str], azurite_connection: Callable[[], str]) -> str:
    """Point the app at its storage and say which: identity-based settings win (the connection string, which
    the app would refuse next to them, is dropped and ``azurite_connection`` is not called); otherwise the
    connection string of the Azurite that ``azurite_connection`` starts."""
    identity = identity_storage(env)
    if identity:
        dropped = env.pop("AzureWebJobsStorage", None)
        note = f"identity-based ({', '.join(sorted(identity))}); no Azurite started"
        return note + ("; the AzureWebJobsStorage connection string is ignored" if dropped else "")
    env["AzureWebJobsStorage"] = azurite_connection()
    return "Azurite"


def webhook_base_url(configured: str | None, app_port: int) -> str:
    """Where the app tells Graph to post notifications.

    Unset, or the sample's loopback URL on the default port: this run's own port, so self-subscription
    reaches this app and not whatever else listens on 7071. Anything else was chosen on purpose and is kept.
    """
    if not configured:
        return f"http://127.0.0.1:{app_port}/api"
    parts = urlsplit(configured)
    if not is_loopback_url(configured) or parts.port != DEFAULT_APP_PORT:
        return configured
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{host}:{app_port}"))


def external_graph_url(env: dict[str, str], graph_url_option: str | None) -> str | None:
    """The Graph endpoint to use as is (no simulator started), or None to start the simulator.

    ``--graph-url`` wins; with real credentials the configured (or default) URL is used; otherwise an
    explicit ``GRAPH_BASE_URL`` other than the sample's simulator URL names a Graph-compatible endpoint
    someone else runs.
    """
    if graph_url_option:
        return graph_url_option
    configured = env.get("GRAPH_BASE_URL", "").rstrip("/")
    if env.get("GRAPH_AUTH_MODE", "") in REAL_GRAPH_MODES:
        return configured or "https://graph.microsoft.com/v1.0"
    if configured and configured != SAMPLE_GRAPH_URL:
        return configured
    return None


def simulator_rich_settings(env: dict[str, str], simulator_root: str, data_dir: Path) -> str | None:
    """With ``RICH_NOTIFICATIONS`` on and the simulator as Graph, fill in what is missing: a local certificate
    (generated once, kept beside Azurite's data so subscriptions made by an earlier run still decrypt) and the
    simulator's token service as audience and OpenID configuration. Returns a note, or None when off."""
    try:
        if not flag(env.get("RICH_NOTIFICATIONS", "false").strip()):
            return None
    except ValueError:  # the app reports the bad value when it reads its settings
        return None
    from devtools.encryption_certificate import certificate_id, generate_pem
    from devtools.graphsim.rich_routes import OPENID_CONFIGURATION_PATH
    from devtools.graphsim.seed import APPLICATION_ID

    note = "rich notifications with the certificate from the settings"
    if not env.get("RICH_NOTIFICATIONS_CERTIFICATE"):
        pem_file = data_dir / "rich-notifications.pem"
        if not pem_file.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            pem_file.write_bytes(generate_pem())
            pem_file.chmod(0o600)
        pem = pem_file.read_bytes()
        env["RICH_NOTIFICATIONS_CERTIFICATE"] = pem.decode("ascii")
        env["RICH_NOTIFICATIONS_CERTIFICATE_ID"] = certificate_id(pem)
        note = f"rich notifications with a local certificate ({pem_file})"
    env.setdefault("RICH_NOTIFICATIONS_AUDIENCE", APPLICATION_ID)
    env.setdefault("RICH_NOTIFICATIONS_OPENID_CONFIGURATION", simulator_root + OPENID_CONFIGURATION_PATH)
    return note


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop():
            raise StopRequested
        if process.poll() is not None:
            raise StartupFailed(f"process exited with {process.returncode} before {url} answered")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (loopback URL we built)
            return
        time.sleep(0.2)
    raise StartupFailed(f"{url} did not answer within {timeout}s")


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within any ``window_s`` seconds, so a crash loop ends instead of spinning."""

    limit: int = AZURITE_MAX_RESTARTS
    window_s: float = AZURITE_RESTART_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _times: list[float] = field(default_factory=list)

    def take(self) -> int | None:
        """Record a restart; its number within the window, or None when the budget is spent."""
        now = self.clock()
        self._times = [t for t in self._times if now - t < self.window_s]
        if len(self._times) >= self.limit:
            return None
        self._times.append(now)
        return len(self._times)


def _start_graph_simulator(
    env: dict[str, str],
    free_ports: bool,
    started: list[subprocess.Popen[bytes]],
    stop: Callable[[], bool],
    app_port: int,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the simulator on the sample URL's port (or a free one); the process and its base URL. EventHub:
    notification URLs go to the local harness's Event Hubs stand-in on the app's port (docs/eventhubs.md)."""
    wanted = urlsplit(SAMPLE_GRAPH_URL).port or 8070
    port = wanted if not free_ports and _port_free(wanted) else free_port()
    hub = f"http://127.0.0.1:{app_port}/_eventhubs"
    command = ["--port", str(port), "--latency-ms", "50", "--eventhub-endpoint", hub]
    process = subprocess.Popen([sys.executable, "-m", "devtools.graphsim", *command], cwd=ROOT, env=env)
    started.append(process)
    _wait_http(f"http://127.0.0.1:{port}/_sim/clock", process, 30, stop)
    return process, f"http://127.0.0.1:{port}/v1.0"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./dev run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=DEFAULT_APP_PORT, help="the app's port (default 7071)")
    parser.add_argument(
        "--graph-url", help="use this Graph-compatible endpoint (incl. /v1.0) instead of starting the simulator"
    )
    parser.add_argument("--settings", type=Path, help="settings file (default: local.settings.json, else the sample)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".azurite", help="Azurite's data folder")
    parser.add_argument(
        "--free-ports", action="store_true", help="Azurite and the simulator on free ports, not 10000-10002/8070"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start everything, supervise it, stop it; 0 after Ctrl-C/SIGTERM, 1 when something failed."""
    args = _parser().parse_args(argv)
    settings_file = args.settings or ROOT / "local.settings.json"
    if args.settings is None and not settings_file.exists():
        settings_file = ROOT / "local.settings.sample.json"
    env = {**load_values(settings_file), **os.environ}
    started: list[subprocess.Popen[bytes]] = []

    ports = list(DEFAULT_STORAGE_PORTS)
    if args.free_ports or not all(_port_free(p) for p in ports):
        ports = [free_port(), free_port(), free_port()]
    azurite = Azurite(blob_port=ports[0], queue_port=ports[1], table_port=ports[2], location=args.data_dir)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def _stop_requested() -> bool:
        return stopping

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def start_azurite() -> str:
        azurite.start()
        return azurite.connection_string

    try:
        storage_note = choose_storage(env, start_azurite)
        if storage_note == "Azurite":
            storage_note = f"Azurite on 127.0.0.1 ports {ports[0]}/{ports[1]}/{ports[2]} (data in {args.data_dir})"
        env["WEBHOOK_BASE_URL"] = webhook_base_url(env.get("WEBHOOK_BASE_URL"), args.port)
        simulator: subprocess.Popen[bytes] | None = None
        graph_url = external_graph_url(env, args.graph_url)
        if graph_url is None:
            simulator, graph_url = _start_graph_simulator(env, args.free_ports, started, _stop_requested, args.port)
            env.update(GRAPH_BASE_URL=graph_url, GRAPH_AUTH_MODE="static_token")
            env.setdefault("GRAPH_STATIC_TOKEN", "local-simulator-token")
            graph_note = f"Graph simulator at {graph_url} (control API: {graph_url.removesuffix('/v1.0')}/_sim/)"
            rich_note = simulator_rich_settings(env, graph_url.removesuffix("/v1.0"), args.data_dir)
            graph_note += f"; {rich_note}" if rich_note else ""
        else:
            env["GRAPH_BASE_URL"] = graph_url
            real = env.get("GRAPH_AUTH_MODE", "") in REAL_GRAPH_MODES
            if not real:
                env.setdefault("GRAPH_AUTH_MODE", "static_token")
                env.setdefault("GRAPH_STATIC_TOKEN", "local-simulator-token")
            graph_note = f"{graph_url} ({'real credentials' if real else 'external, no simulator started'})"
            if not _reachable(graph_url):
                print(f"!! nothing answers at {graph_url} yet; Graph calls fail until it does", flush=True)

        if shutil.which("func"):
            command = ["func", "start", "--port", str(args.port)]
        else:
            command = [sys.executable, "-m", "devtools.funchost", "--port", str(args.port)]
        app = subprocess.Popen(command, cwd=ROOT, env=env)
        started.append(app)
        base = f"http://127.0.0.1:{args.port}"
        _wait_http(f"{base}/api/health", app, 60, _stop_requested)
        print(
            "\n".join(
                [
                    "",
                    f"App running at {base}  (host: {'func start' if command[0] == 'func' else 'local harness'})",
                    f"  health:        {base}/api/health",
                    f"  storage:       {storage_note}",
                    f"  graph:         {graph_note}",
                    f"  webhook:       {env['WEBHOOK_BASE_URL']}",
                    f"  function key:  {env.get('FUNCHOST_FUNCTION_KEY', '(printed by the host)')}",
                    f"  master key:    {env.get('FUNCHOST_MASTER_KEY', '(printed by the host)')}",
                    "Press Ctrl-C to stop everything.",
                ]
            ),
            flush=True,
        )
        return _supervise(app, simulator, azurite if "AzureWebJobsStorage" in env else None, _stop_requested)
    except StopRequested:
        return 0
    except RuntimeError as error:  # StartupFailed, or Azurite's own start errors
        print(f"!! {error}; stopping everything", flush=True)
        return 1
    finally:
        for process in reversed(started):
            stop_process(process)
        azurite.stop(remove_data=False)


def _supervise(
    app: subprocess.Popen[bytes],
    simulator: subprocess.Popen[bytes] | None,
    azurite: Azurite | None,
    stop: Callable[[], bool],
    budget: RestartBudget | None = None,
) -> int:
    """Watch the children until a stop is requested (0) or one fails for good (1).

    Azurite keeps its data on disk, so it is restarted on the same ports; the simulator's state lives in
    memory (a restart would silently drop the app's subscriptions) and the app is ours to debug, so either
    of those dying ends the run.
    """
    budget = budget or RestartBudget()
    while not stop():
        if app.poll() is not None:
            print(f"!! the app exited with status {app.returncode}; stopping everything", flush=True)
            return 1
        if simulator is not None and simulator.poll() is not None:
            print(
                f"!! the Graph simulator exited with status {simulator.returncode}; stopping everything",
                flush=True,
            )
            return 1
        if azurite is not None and not azurite.running:
            log = azurite.location / "azurite.log" if azurite.location else "its log"
            attempt = budget.take()
            if attempt is None:
                print(
                    f"!! Azurite stopped again ({budget.limit} restarts within {budget.window_s:.0f}s already;"
                    f" see {log}); stopping everything",
                    flush=True,
                )
                return 1
            print(
                f"!! Azurite stopped unexpectedly (see {log}); restarting it on the same ports and data folder"
                f" (restart {attempt} of at most {budget.limit} within {budget.window_s:.0f}s)",
                flush=True,
            )
            azurite.start()  # a failure here is a RuntimeError: main reports it and stops everything
            print("   Azurite is back", flush=True)
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
