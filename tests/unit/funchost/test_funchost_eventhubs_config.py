"""The Event Hubs trigger's settings as the harness resolves them: the connection's namespace (connection
string or identity-based), host.json's batch size, and the function's retry policy."""

from __future__ import annotations

import pytest

from devtools.funchost.config import ConfigError, HostConfig, eventhub_namespace
from devtools.funchost.eventhubs import RetryPolicy


def test_the_namespace_comes_from_a_connection_string_or_the_identity_based_setting() -> None:
    string = "Endpoint=sb://NS1.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=x"
    assert eventhub_namespace("HUB", {"HUB": string}) == "ns1.servicebus.windows.net"
    assert eventhub_namespace("HUB", {"HUB__fullyQualifiedNamespace": "ns2.servicebus.windows.net"}) == (
        "ns2.servicebus.windows.net"
    )
    with pytest.raises(ConfigError, match="HUB__fullyQualifiedNamespace"):
        eventhub_namespace("HUB", {"HUB__fullyQualifiedNamespace": " "})
    with pytest.raises(ConfigError, match="no Endpoint"):
        eventhub_namespace("HUB", {"HUB": "SharedAccessKey=x"})


def test_max_event_batch_size_is_read_and_checked() -> None:
    assert HostConfig.from_json({}).eventhub_max_batch == 100
    assert HostConfig.from_json({"extensions": {"eventHubs": {"maxEventBatchSize": 7}}}).eventhub_max_batch == 7
    with pytest.raises(ConfigError, match="maxEventBatchSize"):
        HostConfig.from_json({"extensions": {"eventHubs": {"maxEventBatchSize": 0}}})


def test_retry_policies_as_the_worker_reports_them() -> None:
    assert RetryPolicy.of(None) is None
    fixed = RetryPolicy.of({"strategy": "fixed_delay", "max_retry_count": "3", "delay_interval": "00:00:05"})
    assert fixed is not None
    assert (fixed.wait(1), fixed.wait(3), fixed.allows(3), fixed.allows(4)) == (5.0, 5.0, True, False)
    backoff = RetryPolicy.of(
        {"strategy": "exponential_backoff", "max_retry_count": "4", "minimum_interval": "00:00:02",
         "maximum_interval": "00:00:05"}
    )  # fmt: skip
    assert backoff is not None
    assert [backoff.wait(n) for n in (1, 2, 3)] == [2.0, 4.0, 5.0]
    unbounded = RetryPolicy.of({"strategy": "fixed_delay", "max_retry_count": "-1"})
    assert unbounded is not None
    assert unbounded.allows(1000)
