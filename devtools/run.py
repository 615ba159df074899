"""The README's run command: Azurite + (when no real Graph credentials) the Graph simulator + the app.

The app runs under ``func start`` when Azure Functions Core Tools are on PATH, else under the local
harness (``devtools.funchost``). Settings come from ``local.settings.json`` if present, else from
``local.settings.sample.json``; the storage connection string is pointed at the Azurite started here.
Ctrl-C (or SIGTERM) stops everything this command started.
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
from pathlib import Path
from urllib.parse import urlsplit

from devtools.azurite import ROOT, Azurite, free_port

REAL_GRAPH_MODES = {"client_secret", "certificate", "managed_identity"}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def load_values(settings_file: Path) -> dict[str, str]:
    """``Values`` of a local.settings-style file, as strings."""
    data = json.loads(settings_file.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.get("Values", {}).items()}


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (loopback URL we built)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def _start_graph_simulator(env: dict[str, str], started: list[subprocess.Popen[bytes]]) -> str | None:
    """Start the simulator on GRAPH_BASE_URL's port (or a free one); returns its base URL."""
    if not (ROOT / "devtools" / "graphsim").is_dir():
        print("!! the Graph simulator is not available; Graph calls will fail", flush=True)
        return None
    wanted = urlsplit(env.get("GRAPH_BASE_URL", "http://127.0.0.1:8070/v1.0")).port or 8070
    port = wanted if _port_free(wanted) else free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.graphsim", "--port", str(port), "--latency-ms", "50"], cwd=ROOT, env=env
    )
    started.append(process)
    _wait_http(f"http://127.0.0.1:{port}/_sim/clock", process, 30)
    return f"http://127.0.0.1:{port}/v1.0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev run", description=__doc__)
    parser.add_argument("--port", type=int, default=7071)
    args = parser.parse_args(argv)

    settings_file = ROOT / "local.settings.json"
    if not settings_file.exists():
        settings_file = ROOT / "local.settings.sample.json"
    values = load_values(settings_file)
    env = {**values, **os.environ}
    started: list[subprocess.Popen[bytes]] = []

    ports = [10000, 10001, 10002]
    if not all(_port_free(p) for p in ports):
        ports = [free_port(), free_port(), free_port()]
    azurite = Azurite(blob_port=ports[0], queue_port=ports[1], table_port=ports[2], location=ROOT / ".azurite")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        azurite.start()
        env["AzureWebJobsStorage"] = azurite.connection_string
        graph_note = "real Graph (credentials configured)"
        if env.get("GRAPH_AUTH_MODE", "") not in REAL_GRAPH_MODES:
            base_url = _start_graph_simulator(env, started)
            if base_url:
                env.update(GRAPH_BASE_URL=base_url, GRAPH_AUTH_MODE="static_token")
                env.setdefault("GRAPH_STATIC_TOKEN", "local-simulator-token")
                graph_note = f"Graph simulator at {base_url} (control API: {base_url[:-5]}/_sim/)"

        if shutil.which("func"):
            command = ["func", "start", "--port", str(args.port)]
        else:
            command = [sys.executable, "-m", "devtools.funchost", "--port", str(args.port)]
        app = subprocess.Popen(command, cwd=ROOT, env=env)
        started.append(app)
        base = f"http://127.0.0.1:{args.port}"
        _wait_http(f"{base}/api/health", app, 60)
        print(
            "\n".join(
                [
                    "",
                    f"App running at {base}  (host: {'func start' if command[0] == 'func' else 'local harness'})",
                    f"  health:        {base}/api/health",
                    f"  storage:       Azurite on 127.0.0.1 ports {ports[0]}/{ports[1]}/{ports[2]} (data in .azurite/)",
                    f"  graph:         {graph_note}",
                    f"  function key:  {env.get('FUNCHOST_FUNCTION_KEY', '(printed by the host)')}",
                    f"  master key:    {env.get('FUNCHOST_MASTER_KEY', '(printed by the host)')}",
                    "Press Ctrl-C to stop everything.",
                ]
            ),
            flush=True,
        )
        while not stopping and all(p.poll() is None for p in started):
            time.sleep(0.3)
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.terminate()
        for process in reversed(started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        azurite.stop(remove_data=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
