"""``python -m shared.ops`` against Azurite: every command acts on the shared state the app instances read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.azurite import ACCOUNT_KEY, connection_string, free_port
from shared.cache import CacheKey
from shared.events.poison import peek_poison, write_poison
from shared.ops import run
from shared.subscriptions.management import SubscriptionView
from shared.subscriptions.renewal import RenewResult
from shared.wiring import BREAKERS, CACHE, QUEUES, SUBSCRIPTIONS, registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
NO_FILE = ["--settings", "/nonexistent/local.settings.json"]


async def ops(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """Run one CLI command in-process; (exit status, parsed JSON output)."""
    status = await run([*NO_FILE, *argv], registry)
    return status, json.loads(capsys.readouterr().out)


@dataclass
class FakeSubscriptions:
    """The renew hook of the subscription service, recording what it was asked."""

    renewed: list[str]

    async def renew_due(self) -> RenewResult:
        self.renewed.append("*due*")
        return RenewResult(renewed=2, skipped=1)

    async def renew_now(self, subscription_id: str) -> SubscriptionView | None:
        self.renewed.append(subscription_id)
        if subscription_id != "known":
            return None
        now = datetime.now(UTC)
        return SubscriptionView(
            "known", "users", ("updated",), "adhoc", "active", now, now, now, None, "https://x/api/n", None
        )


async def test_breaker_isolate_then_reset(app_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """isolate forces the shared breaker open (the app's own registry sees it); reset closes it again."""
    assert await ops(capsys, "breaker", "isolate", "graph-mail") == (0, {"key": "graph-mail", "state": "isolated"})
    seen = await (await registry.get(BREAKERS)).get("graph-mail").snapshot()
    assert seen.state.value == "isolated"
    assert await ops(capsys, "breaker", "reset", "graph-mail") == (0, {"key": "graph-mail", "state": "closed"})


async def test_status_and_subscriptions(app_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """status prints the shared sections only (no per-process statistics); subscriptions prints a list."""
    status, document = await ops(capsys, "status")
    assert status == 0
    assert {"breakers", "subscriptions", "queues", "errors"} <= set(document)
    assert "stats" not in document
    assert await ops(capsys, "subscriptions") == (0, [])


async def test_renew_one_or_all_due(app_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """renew ID renews that subscription (1 if unknown); renew alone renews whatever is due."""
    fake = FakeSubscriptions([])
    registry.override(SUBSCRIPTIONS, lambda: fake)  # type: ignore[arg-type, return-value]
    status, view = await ops(capsys, "renew", "known")
    assert (status, view["id"], view["status"]) == (0, "known", "active")
    assert (await ops(capsys, "renew", "missing"))[0] == 1
    assert await ops(capsys, "renew") == (0, {"renewed": 2, "recreated": 0, "failed": 0, "skipped": 1, "catchups": 0})
    assert fake.renewed == ["known", "missing", "*due*"]


async def test_cache_invalidate_key_and_group(app_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """After invalidation a fresh instance misses the key (by key, case-insensitively) and the group."""
    fetches: list[str] = []

    async def fetch_value(name: str) -> dict[str, str]:
        fetches.append(name)
        return {"name": name}

    by_key = CacheKey("users", "user:abc", "user:abc")
    by_group = CacheKey("messages", "abc|0|25|id", "messages:abc")
    for key in (by_key, by_group):
        await (await registry.get(CACHE)).get_or_set(key, lambda k=key: fetch_value(k.key))
    await ops(capsys, "cache", "invalidate", "--key", "users", "USER:ABC")
    await ops(capsys, "cache", "invalidate", "--group", "messages:abc")
    for key in (by_key, by_group):
        result = await (await registry.get(CACHE)).get_or_set(key, lambda k=key: fetch_value(k.key))
        assert result.source == "miss"
    assert fetches == ["user:abc", "abc|0|25|id", "user:abc", "abc|0|25|id"]


async def test_poison_list_and_replay(
    app_env: dict[str, str], unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """list shows each parked message with its reason; replay moves them back and empties the poison queue."""
    queue = f"{unique_name}-work"
    queues = await registry.get(QUEUES)
    await write_poison(queues, queue, "message-1", "handler bug")
    await write_poison(queues, queue, "message-2", "handler bug")
    status, listed = await ops(capsys, "poison", "list", queue)
    assert status == 0
    assert [(m["message"], m["reason"]) for m in listed] == [("message-1", "handler bug"), ("message-2", "handler bug")]
    assert await ops(capsys, "poison", "replay", queue) == (0, {"replayed": 2, "failed": 0})
    assert await peek_poison(await registry.get(QUEUES), queue) == []


def test_module_runs_as_a_command(app_env: dict[str, str]) -> None:
    """``python -m shared.ops status`` works from a shell with the app's settings in the environment."""
    result = subprocess.run(
        [sys.executable, "-m", "shared.ops", *NO_FILE, "status"],
        cwd=ROOT,
        env={**os.environ, **app_env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [b["key"] for b in document["breakers"]] == ["graph-directory", "graph-mail", "graph-subscriptions"]


def test_errors_are_reported_as_json_with_status_2(app_env: dict[str, str]) -> None:
    """Bad settings end in one JSON error and exit status 2, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "shared.ops", *NO_FILE, "status"],
        cwd=ROOT,
        env={**os.environ, **app_env, "GRAPH_AUTH_MODE": "nonsense"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "configuration_error"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["subscriptions"],
        ["renew"],
        ["renew", "some-id"],
        ["breaker", "isolate", "graph-mail"],
        ["cache", "invalidate", "--group", "user:abc"],
        ["poison", "list", "graph-events"],
        ["poison", "replay", "graph-events"],
    ],
)
def test_unreachable_storage_is_status_2_with_one_error_line(command: list[str]) -> None:
    """Storage on a closed loopback port: every command exits 2 with one ``shared.ops:`` line on stderr,
    no traceback, and nothing of the account key."""
    closed = free_port()  # nobody listens there: connections are refused at once
    settings = {
        "AzureWebJobsStorage": connection_string("127.0.0.1", closed, closed, closed),
        "STORAGE_TABLE_PREFIX": "opsunreachable",
        "GRAPH_BASE_URL": f"http://127.0.0.1:{closed}/v1.0",
        "GRAPH_AUTH_MODE": "static_token",
        "GRAPH_STATIC_TOKEN": "unreachable-test-token",
    }
    result = subprocess.run(
        [sys.executable, "-m", "shared.ops", *NO_FILE, *command],
        cwd=ROOT,
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("shared.ops: ")]
    assert len(error_lines) == 1, result.stderr
    assert ACCOUNT_KEY not in result.stdout + result.stderr
    assert json.loads(result.stdout)  # the JSON document (or error) is still printed


def test_unreachable_message_drops_keys_and_query_strings() -> None:
    """An SDK message may quote a SAS URL or a connection string: neither the signature nor the key survives."""
    from azure.core.exceptions import ServiceRequestError

    from shared.ops import unreachable

    error = ServiceRequestError("failed https://a.queue.core.windows.net/q?sv=2024&sig=SIGVALUE AccountKey=KEYVALUE;")
    message = unreachable(error)["message"]
    assert message.startswith("Storage unreachable: ServiceRequestError: failed https://a.queue.core.windows.net/q")
    assert "SIGVALUE" not in message
    assert "KEYVALUE" not in message
