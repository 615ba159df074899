"""The simulator's reading of Graph's EventHub: notification URLs."""

from __future__ import annotations

import pytest

from devtools.graphsim.subscriptions import EventHubAddress, check_url, eventhub_address, hub_validation_item
from devtools.graphsim.wire import GraphError
from shared.events.eventhub import is_validation_item


def test_the_role_based_form_is_read_and_webhook_urls_are_not_hubs() -> None:
    url = "EventHub:https://NS.servicebus.windows.net/eventhubname/graph-notifications?tenantId=contoso.com"
    assert eventhub_address(url) == EventHubAddress("ns.servicebus.windows.net", "graph-notifications", "contoso.com")
    assert eventhub_address("https://app.example/api/notifications") is None
    check_url("notificationUrl", url)  # accepted


@pytest.mark.parametrize(
    "url",
    [
        "EventHub:https://ns.servicebus.windows.net/graph-notifications?tenantId=t",  # no eventhubname segment
        "EventHub:https://ns.servicebus.windows.net/eventhubname/hub",  # no tenantId
        "EventHub:http://ns.servicebus.windows.net/eventhubname/hub?tenantId=t",  # not https
        "EventHub:https://kv.vault.azure.net/secrets/name?tenantId=t",  # the Key Vault form: not simulated
    ],
)
def test_a_malformed_hub_url_is_a_400(url: str) -> None:
    with pytest.raises(GraphError) as raised:
        eventhub_address(url)
    assert raised.value.status == 400


def test_the_validation_message_is_the_one_the_app_ignores() -> None:
    assert is_validation_item(hub_validation_item())
