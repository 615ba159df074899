"""The real app under the local harness: /api/health follows Storage's availability."""

from __future__ import annotations

from pathlib import Path

import httpx

from devtools.azurite import Azurite
from tests.fixtures.funchost import FuncHostLauncher

ROOT = Path(__file__).resolve().parents[2]


def test_health_is_200_with_storage_and_503_without(funchost_factory: FuncHostLauncher) -> None:
    """GET /api/health answers 200 JSON while Azurite runs and 503 once it is stopped; no key is needed."""
    azurite = Azurite()
    azurite.start()
    try:
        app = funchost_factory(
            ROOT,
            env={
                "AzureWebJobsStorage": azurite.connection_string,
                "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
                "GRAPH_AUTH_MODE": "static_token",
                "GRAPH_STATIC_TOKEN": "test-token",
                "HEALTH_PROBE_TIMEOUT_SECONDS": "1",
            },
        )
        healthy = httpx.get(f"{app.base_url}/api/health", timeout=10)
        assert healthy.status_code == 200
        assert healthy.headers["content-type"].startswith("application/json")
        assert healthy.json()["status"] == "healthy"

        azurite.stop()
        unhealthy = httpx.get(f"{app.base_url}/api/health", timeout=10)
        assert unhealthy.status_code == 503
        assert unhealthy.json()["checks"]["table_storage"]["ok"] is False
    finally:
        azurite.stop()
