"""The function app as the Functions host indexes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "health": ("httpTrigger", "health", "anonymous"),
    "openapi": ("httpTrigger", "openapi.json", "anonymous"),
    "get_user": ("httpTrigger", "users/{user_id}", "function"),
    "list_messages": ("httpTrigger", "users/{user_id}/messages", "function"),
    "get_message": ("httpTrigger", "users/{user_id}/messages/{message_id}", "function"),
    "notifications": ("httpTrigger", "notifications", "anonymous"),
    "lifecycle_notifications": ("httpTrigger", "notifications/lifecycle", "anonymous"),
    "process_notifications": ("queueTrigger", "graph-notifications", "AzureWebJobsStorage"),
    "process_lifecycle": ("queueTrigger", "graph-lifecycle", "AzureWebJobsStorage"),
    "status": ("httpTrigger", "status", "admin"),
    "dashboard": ("httpTrigger", "dashboard", "admin"),
    "list_subscriptions": ("httpTrigger", "subscriptions", "admin"),
    "create_subscription": ("httpTrigger", "subscriptions", "admin"),
    "get_subscription": ("httpTrigger", "subscriptions/{subscription_id}", "admin"),
    "delete_subscription": ("httpTrigger", "subscriptions/{subscription_id}", "admin"),
    "renew_subscription": ("httpTrigger", "subscriptions/{subscription_id}/renew", "admin"),
    # The declared defaults: a timer does not need its setting to be indexed (on Azure, an absent setting
    # behind a %SETTING% expression fails indexing).
    "renew_subscriptions": ("timerTrigger", "0 */30 * * * *", True),
    "sweep": ("timerTrigger", "0 */15 * * * *", False),
    "mirror_round": ("queueTrigger", "mirror-rounds", "AzureWebJobsStorage"),
    "mirror_safety_net": ("timerTrigger", "0 * * * * *", True),
    # The hub's name is the declared default, read at indexing (never a %SETTING% expression).
    "process_eventhub": ("eventHubTrigger", "graph-notifications", "GRAPH_EVENTHUB"),
}


SCHEDULES = ("SUBSCRIPTION_RENEWAL_SCHEDULE", "MAINTENANCE_SCHEDULE", "GRAPH_EVENTHUB_NAME")


def _indexed(**settings: str) -> dict[str, dict[str, object]]:
    # get_functions() may be called once per app object, so index in a fresh process.
    code = (
        "import json, function_app\n"
        "out = {}\n"
        "for f in function_app.app.get_functions():\n"
        "    out[f.get_function_name()] = json.loads(f.get_raw_bindings()[0])\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in SCHEDULES} | settings
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(result.stdout))


def test_timer_schedules_come_from_their_settings_when_set() -> None:
    """An operator's schedule setting is what the host indexes (blank means the default)."""
    indexed = _indexed(SUBSCRIPTION_RENEWAL_SCHEDULE="0 5 * * * *", MAINTENANCE_SCHEDULE=" ")
    assert indexed["renew_subscriptions"]["schedule"] == "0 5 * * * *"
    assert indexed["sweep"]["schedule"] == "0 */15 * * * *"


def test_the_event_hub_name_comes_from_its_setting_when_set() -> None:
    assert _indexed(GRAPH_EVENTHUB_NAME="other-hub")["process_eventhub"]["eventHubName"] == "other-hub"


def test_indexed_functions_and_triggers() -> None:
    """The app registers exactly the expected functions with their trigger bindings."""
    indexed = _indexed()
    assert set(indexed) == set(EXPECTED)
    for name, (trigger, target, extra) in EXPECTED.items():
        binding = indexed[name]
        assert binding["type"] == trigger
        if trigger == "httpTrigger":
            assert binding["route"] == target
            assert str(binding["authLevel"]).lower() == extra
        elif trigger == "queueTrigger":
            assert binding["queueName"] == target
            assert binding["connection"] == extra
        elif trigger == "eventHubTrigger":
            assert (binding["eventHubName"], binding["connection"]) == (target, extra)
            assert str(binding["cardinality"]).lower() == "many"
        else:
            assert binding["schedule"] == target
            assert bool(binding.get("runOnStartup")) is extra


def test_import_is_cheap_and_clean() -> None:
    """Importing function_app does no I/O and loads no Graph SDK, Storage SDK or dev-only modules."""
    code = (
        "import sys, json, function_app\n"
        "print(json.dumps(sorted({m.split('.')[0] + ('.' + m.split('.')[1] if m.startswith('azure.') "
        "and m.count('.') else '') for m in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(result.stdout))
    forbidden = {"msgraph", "msgraph_core", "kiota_http", "azure.data", "azure.storage", "azure.identity"}
    forbidden |= {"azure.core", "azure.monitor", "tenacity", "opentelemetry", "httpx", "aiohttp"}
    forbidden |= {"devtools", "tests", "bench"}
    assert loaded & forbidden == set()
