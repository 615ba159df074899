"""host.json, settings and binding expressions are read with the host's defaults and rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.funchost.config import (
    ConfigError,
    HostConfig,
    HostKeys,
    QueueOptions,
    StorageConnection,
    is_disabled,
    load_settings_file,
    parse_timespan,
    resolve_expression,
    storage_connection,
)


def test_empty_host_json_gives_the_host_defaults() -> None:
    """No host.json settings: routePrefix 'api', batchSize 16, newBatchThreshold 8, maxDequeueCount 5,
    visibilityTimeout 0, base64 messages, a one-minute max polling interval, 30-minute function timeout."""
    config = HostConfig.from_json({})
    assert config.route_prefix == "api"
    assert config.queues == QueueOptions(
        batch_size=16,
        new_batch_threshold=8,
        max_polling_interval=60.0,
        visibility_timeout=0.0,
        max_dequeue_count=5,
        message_encoding="base64",
    )
    assert config.function_timeout == 1800.0


def test_queue_settings_are_read_case_insensitively_and_threshold_follows_batch_size() -> None:
    """Setting only batchSize makes newBatchThreshold batchSize/2; TimeSpans and ms numbers both work."""
    raw = {"extensions": {"queues": {"BatchSize": 10, "visibilityTimeout": "00:00:30", "maxPollingInterval": 2000}}}
    queues = HostConfig.from_json(raw).queues
    assert (queues.batch_size, queues.new_batch_threshold) == (10, 5)
    assert queues.visibility_timeout == 30.0
    assert queues.max_polling_interval == 2.0


def test_route_prefix_may_be_empty_and_function_timeout_unbounded() -> None:
    """routePrefix '' serves routes at the root; functionTimeout -1 (or null) means no timeout."""
    config = HostConfig.from_json({"functionTimeout": "-1", "extensions": {"http": {"routePrefix": ""}}})
    assert config.route_prefix == ""
    assert config.function_timeout is None


@pytest.mark.parametrize(
    "raw",
    [
        {"extensions": {"queues": {"batchSize": 33}}},
        {"extensions": {"queues": {"maxDequeueCount": 0}}},
        {"extensions": {"queues": {"messageEncoding": "utf8"}}},
        {"extensions": {"queues": {"visibilityTimeout": "soon"}}},
        {"extensions": []},
    ],
)
def test_invalid_host_json_fails_at_start(raw: dict[str, object]) -> None:
    """Values the host would reject raise ConfigError instead of misbehaving later."""
    with pytest.raises(ConfigError):
        HostConfig.from_json(raw)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00:01", 1.0), ("00:00:00.250", 0.25), ("01:02:03", 3723.0), ("1.00:00:00", 86400.0), ("00:05", 300.0)],
)
def test_timespans_parse_like_dotnet(text: str, seconds: float) -> None:
    """.NET TimeSpan strings: [d.]hh:mm[:ss[.fffffff]]."""
    assert parse_timespan(text) == pytest.approx(seconds)


def test_binding_expressions_resolve_from_settings() -> None:
    """%NAME% is replaced by the app setting; a missing setting is an error naming it."""
    assert resolve_expression("%Q%-in", {"Q": "orders"}) == "orders-in"
    assert resolve_expression("plain", {}) == "plain"
    with pytest.raises(ConfigError, match="MISSING"):
        resolve_expression("%MISSING%", {})


def test_connection_name_is_looked_up_as_given_then_with_azurewebjobs_prefix() -> None:
    """'Storage' finds AzureWebJobsStorage; an empty connection means AzureWebJobsStorage; none set fails."""
    assert storage_connection("Storage", {"AzureWebJobsStorage": "cs"}) == StorageConnection(connection_string="cs")
    assert storage_connection(None, {"AzureWebJobsStorage": "cs"}).connection_string == "cs"
    assert storage_connection("Mine", {"Mine": "m", "AzureWebJobsMine": "x"}).connection_string == "m"
    with pytest.raises(ConfigError):
        storage_connection("Mine", {})


def test_identity_based_connections_use_the_hosts_setting_shapes() -> None:
    """__accountName gives the account's queue endpoint, __queueServiceUri wins over it, __clientId names a
    user-assigned identity; a connection string wins over both (as in the host)."""
    account = storage_connection("Storage", {"AzureWebJobsStorage__accountName": "acct"})
    assert account == StorageConnection(queue_service_uri="https://acct.queue.core.windows.net")
    uri = "https://127.0.0.1:10001/devstoreaccount1"
    env = {
        "AzureWebJobsStorage__accountName": "acct",
        "AzureWebJobsStorage__queueServiceUri": uri + "/",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "abc-123",
    }
    assert storage_connection(None, env) == StorageConnection(queue_service_uri=uri, client_id="abc-123")
    assert storage_connection(None, {**env, "AzureWebJobsStorage": "cs"}).connection_string == "cs"
    assert storage_connection("Mine", {"Mine__serviceUri": uri}).queue_service_uri == uri


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"AzureWebJobsStorage__credential": "connectionstring"}, "only 'managedidentity'"),
        ({"AzureWebJobsStorage__queueServiceUri": "http://127.0.0.1:1/acct"}, "need an https endpoint"),
        ({"AzureWebJobsStorage__queueServiceUri": "ftp://x"}, "need an https endpoint"),
    ],
)
def test_bad_identity_based_connections_fail_at_start(extra: dict[str, str], message: str) -> None:
    """Another credential kind or a non-TLS endpoint (bearer tokens need https) is a configuration error."""
    with pytest.raises(ConfigError, match=message):
        storage_connection(None, {"AzureWebJobsStorage__accountName": "acct", **extra})


def test_settings_file_fills_only_unset_keys(tmp_path: Path) -> None:
    """local.settings.json Values never override the real environment; a missing file is fine."""
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"A": "file", "B": "file", "C": None}}))
    environ = {"A": "env"}
    assert sorted(load_settings_file(path, environ)) == ["B", "C"]
    assert environ == {"A": "env", "B": "file", "C": ""}
    assert load_settings_file(tmp_path / "absent.json", environ) == []


def test_keys_come_from_settings_or_are_generated() -> None:
    """Set keys are used as given; unset ones are random, distinct, and reported as generated."""
    given = HostKeys.from_env({"FUNCHOST_FUNCTION_KEY": "f", "FUNCHOST_MASTER_KEY": "m"})
    assert (given.function_key, given.master_key, given.generated) == ("f", "m", ())
    made = HostKeys.from_env({})
    assert made.function_key != made.master_key
    assert len(made.master_key) >= 32
    assert made.generated == ("FUNCHOST_FUNCTION_KEY", "FUNCHOST_MASTER_KEY")


def test_disabled_setting_follows_the_host_convention() -> None:
    """AzureWebJobs.<name>.Disabled = true/1 disables a function."""
    assert is_disabled("tick", {"AzureWebJobs.tick.Disabled": "true"})
    assert is_disabled("tick", {"AzureWebJobs.tick.Disabled": "1"})
    assert not is_disabled("tick", {"AzureWebJobs.tick.Disabled": "false"})
    assert not is_disabled("tick", {})
