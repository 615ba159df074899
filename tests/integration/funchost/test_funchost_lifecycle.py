"""The harness process and in-process host: settings, start, clean shutdown."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import azure.functions as func
import httpx
import pytest

from devtools.azurite import Azurite
from devtools.funchost import FuncHost
from devtools.graphsim.client import SimControl
from tests.fixtures.funchost import FuncHostLauncher
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer
from tests.integration.funchost._support import SAMPLE_APP, YEARLY, records, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_sigterm_stops_cleanly_after_the_run_in_flight(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """SIGTERM stops scheduling, lets the running invocation finish, logs 'funchost stopped', exits 0."""
    azurite.start()
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_QUEUE": "funchost-lifecycle-unused",
        "TICK_SCHEDULE": "* * * * * *",
        "TICK_SLEEP": "1.0",
        "SAMPLE_RECORD_DIR": str(tmp_path),
    }
    harness = funchost_factory(SAMPLE_APP, env)
    wait_for(lambda: [r for r in records(tmp_path, "tick") if r["phase"] == "start"], what="a tick to start")
    harness.send_signal(signal.SIGTERM)
    assert harness.process.wait(timeout=15) == 0
    assert "funchost stopped" in harness.output
    ticks = records(tmp_path, "tick")
    assert len([r for r in ticks if r["phase"] == "start"]) == len([r for r in ticks if r["phase"] == "end"])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{harness.base_url}/admin/host/status")


def test_settings_file_values_apply_unless_the_environment_sets_them(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """Values from --settings fill in missing settings (here the timer schedule); the environment wins
    (here the record folder)."""
    azurite.start()
    settings = tmp_path / "local.settings.json"
    values = {
        "TICK_SCHEDULE": YEARLY,
        "SAMPLE_QUEUE": "funchost-settings-unused",
        "SAMPLE_RECORD_DIR": str(tmp_path / "ignored"),
    }
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    env = {"AzureWebJobsStorage": azurite.connection_string, "SAMPLE_RECORD_DIR": str(tmp_path)}
    harness = funchost_factory(SAMPLE_APP, env, settings=settings)
    assert "errors" not in httpx.get(f"{harness.base_url}/admin/host/status").json()
    wait_for(lambda: records(tmp_path, "yearly"), what="the startup run recorded where the environment says")


def test_missing_setting_puts_one_function_in_error_and_the_rest_runs(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """An unresolvable %TICK_SCHEDULE% puts 'tick' in error (reported by the host status); HTTP still works."""
    azurite.start()
    env = {"AzureWebJobsStorage": azurite.connection_string, "SAMPLE_QUEUE": "funchost-error-unused"}
    harness = funchost_factory(SAMPLE_APP, env, settings=tmp_path / "none.json")
    status = httpx.get(f"{harness.base_url}/admin/host/status").json()
    assert status["state"] == "Running"
    assert len(status["errors"]) == 1
    assert status["errors"][0].startswith("tick: ")
    assert "TICK_SCHEDULE" in status["errors"][0]
    assert httpx.get(f"{harness.base_url}/sample/ping").text == "pong"


def _inline_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo/{word}", methods=["GET"])
    async def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params["word"])

    @app.route(route="nothing")
    def nothing(req: func.HttpRequest) -> None:
        return None

    return app


async def test_in_process_host_serves_inside_the_test_loop(tmp_path: Path) -> None:
    """FuncHost runs in the pytest event loop: start, base_url, default 'api' prefix, stop; and it indexes an
    app once, so a second host on the same app object works (get_functions raises on a second call)."""
    app = _inline_app()
    env = {"FUNCHOST_FUNCTION_KEY": "f", "FUNCHOST_MASTER_KEY": "m"}
    for _ in range(2):
        host = FuncHost(app, app_dir=tmp_path, env=env)
        await host.start()
        try:
            async with httpx.AsyncClient(base_url=host.base_url) as client:
                assert (await client.get("/api/echo/hi")).text == "hi"
                assert (await client.get("/api/nothing")).status_code == 204
                assert (await client.get("/admin/host/status")).json()["state"] == "Running"
        finally:
            await host.stop()
        assert host.state == "Stopped"


def test_sigterm_closes_the_apps_clients_after_the_last_invocation(
    funchost_factory: FuncHostLauncher,
    storage_connection_string: str,
    graphsim_server: GraphSimServer,
    graphsim: SimControl,
) -> None:
    """The real app under the harness: a request builds its Storage and Graph clients; at SIGTERM the
    harness drains, then runs the app's close hook (function_app.on_shutdown) on the same loop, so
    nothing is reported unclosed when the process ends, and it exits 0."""
    user = graphsim.users()[0]
    env = {
        "AzureWebJobsStorage": storage_connection_string,
        "STORAGE_TABLE_PREFIX": "c" + uuid.uuid4().hex[:12],
        "GRAPH_BASE_URL": graphsim_server.base_url,
        "GRAPH_AUTH_MODE": "static_token",
        "GRAPH_STATIC_TOKEN": GRAPHSIM_TOKEN,
        "SUBSCRIPTION_RENEWAL_SCHEDULE": YEARLY,
        "MAINTENANCE_SCHEDULE": YEARLY,
        "MIRROR_SCHEDULE": YEARLY,
    }
    harness = funchost_factory(ROOT, env)
    response = httpx.get(
        f"{harness.base_url}/api/users/{user['id']}", headers={"x-functions-key": harness.function_key}, timeout=30
    )
    assert response.status_code == 200
    harness.send_signal(signal.SIGTERM)
    assert harness.process.wait(timeout=30) == 0
    output = harness.output
    assert "funchost stopped" in output
    assert "Unclosed client session" not in output
    assert "Unclosed connector" not in output
    assert "close hook" not in output  # neither timed out nor failed
