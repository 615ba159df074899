"""/api/health against real Storage: healthy while Azurite runs, 503 once it is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.azurite import Azurite
from shared.wiring import check_health, registry


@pytest.fixture(name="own_azurite")
def _own_azurite() -> Iterator[Azurite]:
    """An Azurite this test may stop without disturbing the rest of the session."""
    server = Azurite()
    server.start()
    yield server
    server.stop()


async def test_health_reports_storage_and_turns_503_when_it_stops(
    app_env: dict[str, str], own_azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both storage probes pass against Azurite; after Azurite stops the check is 503 within the probe bound."""
    monkeypatch.setenv("AzureWebJobsStorage", own_azurite.connection_string)
    monkeypatch.setenv("HEALTH_PROBE_TIMEOUT_SECONDS", "1")
    await registry.reset()

    status, body = await check_health(registry)
    assert status == 200
    assert body["checks"]["table_storage"]["ok"]
    assert body["checks"]["queue_storage"]["ok"]
    assert body["graph_mode"] == "simulator"
    assert body["version"]

    own_azurite.stop()
    status, body = await check_health(registry)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert not body["checks"]["table_storage"]["ok"]
    assert body["checks"]["queue_storage"]["latency_ms"] < 3000
