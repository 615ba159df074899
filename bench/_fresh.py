"""A fresh harness process on a throwaway app, timed from spawn to its first answer.

Shared by ``bench.webhook`` (first 202) and ``bench.cold_start`` (first 202 and first uncached read): the
naive webhook app, the harness floor app, and the timer of one fresh process.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._stack import ROOT, Harness, process_cpu_seconds, spawn_harness

NAIVE_WEBHOOK_APP = '''"""A naive webhook app: every SDK imported and the Graph client built at module load."""

import os
import time

import azure.data.tables.aio  # noqa: F401
import azure.functions as func
import azure.identity.aio  # noqa: F401
import azure.storage.queue.aio  # noqa: F401
from azure.core.credentials import AccessToken
from msgraph import GraphServiceClient


class StaticTokenCredential:
    async def get_token(self, *scopes, **kwargs):
        return AccessToken(os.environ["GRAPH_STATIC_TOKEN"], int(time.time()) + 3600)

    async def close(self):
        pass


graph = GraphServiceClient(credentials=StaticTokenCredential(), scopes=["https://graph.microsoft.com/.default"])
app = func.FunctionApp()


@app.route(route="notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=202)
'''


FLOOR_APP = '''"""The harness floor: the app's two cold routes, importing nothing but azure.functions."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=202)


@app.route(route="users/{user_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_user(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse('{"id": "%s"}' % req.route_params["user_id"], mimetype="application/json")
'''


# What the harness needs besides the app's own requirements (in Azure the host is not Python): pinned as in
# requirements-dev.txt.
HARNESS_EXTRAS = ("croniter", "azure-storage-blob")


def production_python(folder: Path = ROOT / "bench" / "out") -> str:
    """The interpreter of a virtual environment holding only requirements.txt (plus the harness's own needs),
    built once per requirements content: cold paths are timed with the packages a deployment has. The
    development environment adds tools whose presence changes imports (httpx loads its command-line client
    when ``click``, ``rich`` and ``pygments`` are installed: ~40 ms that no deployment pays)."""
    pins = [
        line.strip()
        for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
        if line.split("==")[0].strip() in HARNESS_EXTRAS
    ]
    wanted = (ROOT / "requirements.txt").read_text(encoding="utf-8") + "\n".join(pins)
    venv = folder / f"prod-venv-{hashlib.sha256(wanted.encode()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*install, "-r", str(ROOT / "requirements.txt"), *pins], check=True)
        (venv / ".complete").touch()
    return str(python)


@contextlib.contextmanager
def throwaway_app_dir(source: str) -> Iterator[Path]:
    """A temporary app folder holding ``source`` as function_app.py and the real host.json."""
    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    try:
        (folder / "function_app.py").write_text(source, encoding="utf-8")
        shutil.copy(ROOT / "host.json", folder / "host.json")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class ColdRequest:
    """The first request a fresh process must answer, and the status that counts as answered."""

    method: str
    path: str  # below the harness's base URL, e.g. /api/notifications
    expect: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FirstAnswer:
    """Seconds from spawning the harness: until its port took the request, and until that request's answer;
    and the CPU seconds the harness process had used by then (unlike wall time, not inflated by other
    processes competing for the cores)."""

    port_open: float
    answered: float
    cpu: float = float("nan")


def first_answer(
    app_dir: Path, env: Mapping[str, str], request: ColdRequest, timeout: float = 60.0, python: str = sys.executable
) -> FirstAnswer:
    """Spawn the harness (run by ``python``) and send ``request`` (every 10 ms until the port answers) until
    its first answer.

    Any status other than ``request.expect`` fails the run: a cold path is only timed when it worked."""
    harness: Harness = spawn_harness(app_dir, env, python=python)
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=30.0) as client:
            while time.monotonic() < deadline:
                if harness.process.poll() is not None:
                    raise RuntimeError(f"funchost exited with {harness.process.returncode}:\n{harness.output()}")
                sent = time.perf_counter()
                try:
                    response = client.request(
                        request.method, harness.base_url + request.path, content=request.body, headers=request.headers
                    )
                except httpx.TransportError:
                    time.sleep(0.01)
                    continue
                if response.status_code != request.expect:
                    raise RuntimeError(
                        f"first {request.method} {request.path} answered {response.status_code}: {response.text[:200]}"
                        f"\n{harness.output()[-2000:]}"
                    )
                answered = time.perf_counter() - harness.started
                return FirstAnswer(sent - harness.started, answered, process_cpu_seconds(harness.process.pid))
        raise RuntimeError(f"no answer within {timeout} s:\n{harness.output()}")
    finally:
        harness.stop()
