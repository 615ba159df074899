"""A fresh process answers from the Table cache without importing the Graph SDK (its cold cost is ~1 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devtools.graphsim.client import SimControl
from tests.fixtures.graphsim import GraphSimServer

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json, sys
import azure.functions as func
from shared.api import views
from shared.wiring import DIRECTORY, registry, settings

async def main():
    request = func.HttpRequest("GET", "http://x/api/users/{uid}", headers={{}}, params={{}},
                               route_params={{"user_id": "{uid}"}}, body=b"")
    # What the trigger does (triggers/users_api.py): the directory from the registry, passed in.
    response = await views.get_user(request, await registry.get(DIRECTORY), settings().cache_user_ttl_seconds)
    await registry.aclose()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("msgraph", "msgraph_core", "kiota_http"))
    print(json.dumps({{"status": response.status_code, "x_cache": response.headers.get("X-Cache"),
                      "graph_modules": loaded}}))

asyncio.run(main())
"""


def _fresh_process(uid: str, env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(uid=uid)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_first_request_of_a_fresh_process_is_an_l2_hit_without_the_graph_sdk(
    app_env: dict[str, str], graphsim_server: GraphSimServer, graphsim: SimControl
) -> None:
    """Process 1 misses (and loads the SDK to call Graph, but none of its typed models); process 2's first
    request is hit-l2 with no msgraph/kiota module imported at all."""
    env = {**os.environ, **app_env, "GRAPH_BASE_URL": graphsim_server.base_url, "PYTHONPATH": str(ROOT)}
    env["GRAPH_STATIC_TOKEN"] = "graphsim-test-token"
    uid = graphsim.users()[0]["id"]
    first = _fresh_process(uid, env)
    assert first["x_cache"] == "miss"
    loaded = first["graph_modules"]
    assert isinstance(loaded, list)
    assert loaded
    assert not [name for name in loaded if name.startswith("msgraph.generated.models")]
    second = _fresh_process(uid, env)
    assert second == {"status": 200, "x_cache": "hit-l2", "graph_modules": []}
