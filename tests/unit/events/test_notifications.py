"""Parsing Graph bodies and our queue messages: typed items for good input, InvalidInputError for bad."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InvalidInputError
from shared.events.model import change_identity, event_type, parse_resource
from shared.events.notifications import (
    ChangeNotification,
    LifecycleNotification,
    encode_envelope,
    parse_body,
    parse_envelope,
    parse_item,
)
from tests.unit.events import samples

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_user_change_becomes_users_updated_event() -> None:
    """A users item parses into a change notification whose event is users.updated for that user."""
    (raw,) = parse_body(samples.body(samples.user_change("updated")))
    item = parse_item(raw)
    assert isinstance(item, ChangeNotification)
    event = item.to_event(RECEIVED)
    assert (event.type, event.user_id, event.message_id) == ("users.updated", samples.USER, None)
    assert (event.subscription_id, event.tenant_id, event.source) == (
        samples.SUBSCRIPTION,
        samples.TENANT,
        "notification",
    )
    assert event.id == item.identity(RECEIVED)


def test_message_change_names_the_mailbox_and_the_message() -> None:
    """The docs' mail shape (``Users/{guid}@{tenant}/Messages/{id}``) gives the bare user guid and message id."""
    item = parse_item(samples.message_change("created"))
    assert isinstance(item, ChangeNotification)
    event = item.to_event(RECEIVED)
    assert (event.type, event.user_id, event.message_id) == ("messages.created", samples.USER, samples.MESSAGE)


@pytest.mark.parametrize("name", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
def test_lifecycle_items_parse_as_lifecycle_notifications(name: str) -> None:
    """Each documented lifecycle event parses into a lifecycle notification."""
    item = parse_item(samples.lifecycle(name))
    assert isinstance(item, LifecycleNotification)
    assert (item.lifecycle_event, item.subscription_id) == (name, samples.SUBSCRIPTION)


@pytest.mark.parametrize(
    ("resource", "kind", "user", "item"),
    [
        ("Users/u1", "users", "u1", "u1"),
        ("users/u1/messages/m1", "messages", "u1", "m1"),
        ("Users('u1')/Messages('m1')", "messages", "u1", "m1"),
        ("users/u1/mailFolders/inbox/messages/m1", "messages", "u1", "m1"),
        ("groups/g1", "groups", None, "g1"),
        ("", "unknown", None, None),
    ],
)
def test_resource_paths_name_kind_user_and_item(resource: str, kind: str, user: str | None, item: str | None) -> None:
    """Graph's path spellings all reduce to the same kind and ids."""
    path = parse_resource(resource)
    assert (path.kind, path.user_id, path.item_id) == (kind, user, item)


def test_event_names_are_kind_dot_change_in_lower_case() -> None:
    """Event names are ``{kind}.{changeType}``, lower-cased, whatever Graph's casing."""
    assert event_type("users", "Deleted") == "users.deleted"
    assert event_type("messages", "unknownFutureValue") == "messages.unknownfuturevalue"


def test_client_state_never_appears_in_repr_or_wire_form() -> None:
    """The secret is checked at the webhook and then forgotten: not printed, not queued."""
    item = parse_item(samples.user_change())
    assert samples.SECRET not in repr(item)
    assert "clientState" not in item.to_wire()


def test_identity_is_stable_for_redeliveries_and_distinct_per_version() -> None:
    """Identical items share an identity; another etag (a newer change) gets a new one."""
    first = parse_item(samples.message_change(etag='W/"1"'))
    again = parse_item(samples.message_change(etag='W/"1"'))
    newer = parse_item(samples.message_change(etag='W/"2"'))
    assert isinstance(first, ChangeNotification)
    assert isinstance(again, ChangeNotification)
    assert isinstance(newer, ChangeNotification)
    assert first.identity(RECEIVED) == again.identity(RECEIVED) != newer.identity(RECEIVED)
    assert len(first.identity(RECEIVED)) == 64


def test_items_without_etag_collapse_only_within_the_window() -> None:
    """Without an etag, identical items received within one 5-minute window are one (a redelivery); a
    later one is a new change, so a real second update is not suppressed for the whole dedupe period."""
    item = parse_item(samples.message_change("deleted", etag=None))
    assert isinstance(item, ChangeNotification)
    one = two = dataclasses.replace(item, notification_id=None)
    assert one.identity(RECEIVED) == two.identity(RECEIVED + timedelta(seconds=30))
    assert one.identity(RECEIVED) != two.identity(RECEIVED + timedelta(minutes=10))


def test_live_and_delta_descriptions_of_one_version_share_an_identity() -> None:
    """A message "created" notification and a delta "updated" item with the same etag are one event."""
    item = parse_item(samples.message_change("created", etag='W/"7"'))
    assert isinstance(item, ChangeNotification)
    path = parse_resource(item.resource)
    from_delta = change_identity(
        "messages", path.item_id, "updated", etag='W/"7"', received_at=RECEIVED + timedelta(hours=1)
    )
    assert item.identity(RECEIVED) == from_delta


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe{}",
        b"[" * 100_000,
        b'{"value": {}}',
        b'{"value": "x"}',
        b"[]",
        b'{"value": [NaN]}',
        b'{"value": [' + b'{"a":1},' * 10_000 + b'{"a":1}]}',
        b'{"value": []}' + b" " * (1024 * 1024),
        '{"value": ["\u00e9"]}'.encode("utf-16"),
    ],
    ids=[
        "not-json",
        "invalid-utf8",
        "deep",
        "value-object",
        "value-string",
        "array",
        "nan",
        "10k-items",
        "huge",
        "utf16",
    ],
)
def test_hostile_bodies_are_invalid_input(body: bytes) -> None:
    """Bodies that are not a bounded UTF-8 JSON object with a value array raise InvalidInputError only."""
    with pytest.raises(InvalidInputError):
        parse_body(body)


@pytest.mark.parametrize(
    "raw",
    [
        "a string",
        [samples.user_change()],
        {**samples.user_change(), "changeType": 7},
        {**samples.user_change(), "subscriptionId": None},
        {**samples.user_change(), "resource": "x" * 5000},
        {**samples.user_change(), "resource": "Users/a\nb"},
        {**samples.user_change(), "clientState": "x" * 256},
        {**samples.user_change(), "lifecycleEvent": "missed"},
        {**samples.user_change(), "resourceData": [1]},
        {**samples.user_change(), "resourceData": {"id": 5}},
        {**samples.user_change(), "resourceData": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}},
        {**samples.user_change(), "resourceData": {"pad": "x" * 9000}},
        {**samples.user_change(), "tenantId": "\ud800"},
        {"subscriptionId": samples.SUBSCRIPTION},
    ],
)
def test_malformed_items_are_refused_one_by_one(raw: Any) -> None:
    """Wrong types, over-long fields, over-long clientState, deep or big resourceData: InvalidInputError."""
    with pytest.raises(InvalidInputError):
        parse_item(raw)


def test_envelope_round_trips_items_and_receive_time() -> None:
    """What the webhook writes, the processor reads back unchanged."""
    items = [json.dumps(samples.user_change()), json.dumps(samples.lifecycle())]
    envelope = parse_envelope(encode_envelope(RECEIVED, items))
    assert envelope.received_at == RECEIVED
    assert envelope.items == [samples.user_change(), samples.lifecycle()]


@pytest.mark.parametrize(
    "message",
    [
        "{}",
        '{"v": 1, "items": []}',
        '{"v": 2, "received_at": "2024-03-01T12:00:00+00:00", "items": []}',
        '{"v": 1, "received_at": "2024-03-01T12:00:00", "items": []}',
        '{"v": 1, "received_at": "yesterday", "items": []}',
        b"\xff",
    ],
)
def test_foreign_queue_messages_are_invalid(message: str | bytes) -> None:
    """Queue messages we did not write (no version, naive time, wrong version) are refused."""
    with pytest.raises(InvalidInputError):
        parse_envelope(message)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=30,
)
_item = st.fixed_dictionaries(
    {},
    optional={
        "subscriptionId": st.one_of(st.text(max_size=40), _json),
        "changeType": st.one_of(st.sampled_from(["created", "updated", "deleted"]), _json),
        "lifecycleEvent": st.one_of(st.sampled_from(["missed", "subscriptionRemoved"]), _json),
        "resource": st.one_of(st.text(max_size=60), _json),
        "resourceData": _json,
        "clientState": st.one_of(st.text(max_size=300), _json),
        "tenantId": st.one_of(st.text(max_size=40), _json),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(lambda v: json.dumps({"value": v}).encode(), st.lists(_item | _json, max_size=5)),
    )
)
def test_fuzzed_bodies_parse_or_raise_invalid_input_only(body: bytes) -> None:
    """Whatever bytes arrive, parsing yields typed items or InvalidInputError, never another exception."""
    try:
        raw_items = parse_body(body)
    except InvalidInputError:
        return
    for raw in raw_items:
        try:
            item = parse_item(raw)
        except InvalidInputError:
            continue
        if isinstance(item, ChangeNotification):
            json.dumps(item.to_wire(), ensure_ascii=False).encode("utf-8")
            item.to_event(RECEIVED).to_json()
