"""Parsing the desired-state setting: valid forms, clear errors for malformed and hostile values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import ConfigurationError
from shared.subscriptions.desired import (
    MAX_ENTRIES,
    DesiredSubscription,
    ResourceSpec,
    parse_desired,
    parse_resource,
)


def test_parses_every_supported_resource_with_whitespace_and_a_trailing_separator() -> None:
    """Case-insensitive literal segments; UPNs lower-cased; folder ids kept as written; types ordered."""
    desired = parse_desired(
        " users = deleted , updated ;Users/Adele@Contoso.com/Messages=created;"
        "users/0e2b/mailFolders/AAMkAG-_=/messages=created,deleted; /users/0e2b/=updated; "
    )

    assert desired == (
        DesiredSubscription(ResourceSpec("users"), ("updated", "deleted")),
        DesiredSubscription(ResourceSpec("messages", "adele@contoso.com"), ("created",)),
        DesiredSubscription(ResourceSpec("folder_messages", "0e2b", "AAMkAG-_="), ("created", "deleted")),
        DesiredSubscription(ResourceSpec("user", "0e2b"), ("updated",)),
    )
    assert [d.spec.resource for d in desired] == [
        "users",
        "users/adele@contoso.com/messages",
        "users/0e2b/mailFolders/AAMkAG-_=/messages",
        "users/0e2b",
    ]


@pytest.mark.parametrize("value", [None, "", "  ", ";;"])
def test_an_empty_value_means_no_subscriptions(value: str | None) -> None:
    assert parse_desired(value) == ()


def test_lifetimes_follow_graphs_maximum_per_resource() -> None:
    """Users 41,760 minutes, mail 10,080 minutes, mail with resource data 1,440 minutes."""
    assert parse_resource("users").max_lifetime() == timedelta(minutes=41_760)
    assert parse_resource("users/a").max_lifetime() == timedelta(minutes=41_760)
    assert parse_resource("users/a/messages").max_lifetime() == timedelta(minutes=10_080)
    assert parse_resource("users/a/mailFolders/inbox/messages").max_lifetime() == timedelta(minutes=10_080)
    assert parse_resource("users/a/messages").max_lifetime(with_data=True) == timedelta(minutes=1_440)
    assert parse_resource("users/a/mailFolders/inbox/messages").max_lifetime(with_data=True) == timedelta(minutes=1_440)


def test_data_option_marks_a_rich_messages_entry_with_or_without_a_delivery() -> None:
    desired = parse_desired(
        "users/a/messages=created,updated+data; users/b/mailFolders/inbox/messages=created + DATA@eventhub"
    )

    assert desired == (
        DesiredSubscription(ResourceSpec("messages", "a"), ("created", "updated"), "webhook", with_data=True),
        DesiredSubscription(ResourceSpec("folder_messages", "b", "inbox"), ("created",), "eventhub", with_data=True),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("users=updated+data", "entry 1: +data is supported for messages resources only, not 'users'"),
        ("users/a=updated+data", "entry 1: +data is supported for messages resources only, not 'users/a'"),
        ("users/a/messages=created+body", "entry 1: unknown option '+body'; expected +data"),
        ("users/a/messages=created+data+data", "entry 1: unknown option '+data+data'; expected +data"),
        ("users/a/messages=created+", "entry 1: unknown option '+'; expected +data"),
    ],
)
def test_data_option_is_strict(value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_desired(value)
    assert expected in raised.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("users", "entry 1: 'users' is not 'resource=changeType,...'"),
        ("users=", "entry 1: unknown change types ''"),
        ("users=updated,removed", "entry 1: unknown change types 'removed'"),
        ("users=updated,updated", "entry 1: repeated change types"),
        ("groups=updated", "entry 1: unsupported resource 'groups'"),
        ("users/a/events=created", "entry 1: unsupported resource 'users/a/events'"),
        ("users/a/messages/b=updated", "entry 1: unsupported resource"),
        ("users/a b/messages=created", "entry 1: unsupported resource"),
        ("users/a?x=1/messages=created", "entry 1: unsupported resource"),
        ("users=updated; USERS=deleted", "entry 2: resource 'users' is listed twice"),
    ],
)
def test_malformed_entries_are_named_with_the_reason(value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_desired(value, setting="GRAPH_SUBSCRIPTIONS")

    assert "GRAPH_SUBSCRIPTIONS" in caught.value.message
    assert expected in caught.value.message


def test_every_bad_entry_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_desired("users=nope; users/a/messages=created; teams=updated")

    assert "entry 1:" in caught.value.message
    assert "entry 3:" in caught.value.message
    assert "entry 2:" not in caught.value.message


def test_a_huge_value_is_refused_without_echoing_it() -> None:
    """Hostile input: a megabyte of text yields a short error, not the text."""
    with pytest.raises(ConfigurationError) as caught:
        parse_desired("users=updated;" * 100_000)

    assert len(caught.value.message) < 200


def test_too_many_entries_are_refused() -> None:
    value = ";".join(f"users/u{i}/messages=created" for i in range(MAX_ENTRIES + 1))

    with pytest.raises(ConfigurationError, match=f"at most {MAX_ENTRIES} subscriptions"):
        parse_desired(value)


def test_many_bad_entries_produce_a_bounded_message() -> None:
    """Hundreds of unknown resources: ten are listed, the rest counted; long input is cut in quotes."""
    value = ";".join(f"{'x' * 150}{i}=created" for i in range(150))

    with pytest.raises(ConfigurationError) as caught:
        parse_desired(value)

    assert "... and 140 more" in caught.value.message
    assert len(caught.value.message) < 3000


def test_an_entry_may_name_its_delivery_path() -> None:
    """``@eventhub`` after the change types sends that subscription to the event hub; ``@webhook`` or nothing
    keeps the webhook; a UPN's ``@`` in the resource is not a delivery."""
    desired = parse_desired(
        "users=updated@EventHub; users/a@contoso.com/messages=created@webhook; users/b/messages=created"
    )
    assert [d.delivery for d in desired] == ["eventhub", "webhook", "webhook"]
    assert desired[1].spec.user == "a@contoso.com"
    with pytest.raises(ConfigurationError, match="unknown delivery 'queue'"):
        parse_desired("users=updated@queue")


def test_the_event_hub_url_is_graphs_documented_form() -> None:
    from shared.subscriptions.delivery import EventHubTarget, delivery_of

    url = EventHubTarget("MyNs.servicebus.windows.net", "graph-notifications", "contoso.com").url
    assert url == "EventHub:https://myns.servicebus.windows.net/eventhubname/graph-notifications?tenantId=contoso.com"
    assert delivery_of(url) == "eventhub"
    assert delivery_of("https://app.example/api/notifications") == "webhook"


def test_eventhub_entries_need_the_namespace_and_a_tenant() -> None:
    from shared.settings import Settings
    from shared.startup_checks import desired_subscriptions_problems

    base = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "GRAPH_AUTH_MODE": "static_token",
        "GRAPH_STATIC_TOKEN": "t",
        "GRAPH_BASE_URL": "http://127.0.0.1:8070/v1.0",
        "WEBHOOK_BASE_URL": "http://127.0.0.1:7071/api",
        "GRAPH_SUBSCRIPTIONS": "users=updated@eventhub",
    }
    problems = desired_subscriptions_problems(Settings.from_env(base))
    assert any("GRAPH_EVENTHUB__fullyQualifiedNamespace" in p for p in problems)
    assert any("GRAPH_EVENTHUB_TENANT" in p for p in problems)
    complete = {**base, "GRAPH_EVENTHUB__fullyQualifiedNamespace": "ns.servicebus.windows.net", "GRAPH_TENANT_ID": "t1"}
    assert desired_subscriptions_problems(Settings.from_env(complete)) == []


GROUP = "5d0d1e5e-1111-4a2b-9c3d-000000000001"


def test_a_fleet_names_a_groups_or_the_tenants_mailboxes() -> None:
    """Group (direct or transitive) or tenant, all messages or one folder; options as for fixed entries."""
    entries = parse_desired(
        f"mailboxes(group={GROUP.upper()})/messages=created; "
        f"MAILBOXES(group={GROUP},transitive)/mailFolders/Inbox/messages=created,updated+data@eventhub; "
        "mailboxes(tenant)/messages=deleted"
    )
    specs = [e.spec for e in entries]
    assert [s.resource for s in specs] == [
        f"mailboxes(group={GROUP})/messages",
        f"mailboxes(group={GROUP},transitive)/mailFolders/Inbox/messages",
        "mailboxes(tenant)/messages",
    ]
    assert [(s.group, s.transitive, s.folder) for s in specs] == [
        (GROUP, False, None),
        (GROUP, True, "Inbox"),
        (None, False, None),
    ]
    assert (entries[1].with_data, entries[1].delivery) == (True, "eventhub")
    assert specs[1].member("ABC@contoso.com") == ResourceSpec("folder_messages", "abc@contoso.com", "Inbox")
    assert specs[0].member("u1").resource == "users/u1/messages"
    assert specs[0].max_lifetime(with_data=True) == timedelta(minutes=1_440)


@pytest.mark.parametrize(
    "value",
    [
        "mailboxes(group=sales)/messages=created",  # a group by id only
        f"mailboxes(group={GROUP})=created",  # a fleet follows messages
        f"mailboxes(group={GROUP},nested)/messages=created",
        "mailboxes()/messages=created",
        "mailboxes(tenant,transitive)/messages=created",
        f"mailboxes(group={GROUP}/messages=created",
        f"mailboxes(group={GROUP})/events=created",
        f"mailboxes(group={GROUP}))/messages=created",
    ],
)
def test_malformed_fleets_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="unsupported resource"):
        parse_desired(value)
