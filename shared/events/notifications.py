"""Parse and validate Graph notification payloads and our queue messages into typed items.

Two levels, two failure modes. The *body* (or queue message) is checked as a whole: size, UTF-8,
JSON, an object with a ``value``/``items`` array of bounded length. Anything wrong there raises
``InvalidInputError`` and nothing is kept. Each *item* is then checked alone, so one malformed item is
dropped (webhook) or poisoned (processor) without costing its neighbours.

Graph's shapes (``changeNotification``): a change item has ``changeType`` (created/updated/deleted),
``resource``, optional ``resourceData`` (``@odata.type``, ``@odata.id``, ``@odata.etag``, ``id``); a
lifecycle item has ``lifecycleEvent`` (reauthorizationRequired/subscriptionRemoved/missed) instead.
Both carry ``subscriptionId``, ``subscriptionExpirationDateTime``, ``tenantId`` and ``clientState``.
A rich notification's ``encryptedContent`` is carried (still encrypted, bounded) only when the webhook
keeps it (``RICH_NOTIFICATIONS``: the POST's validation tokens passed); fields we do not use are dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidInputError, PayloadTooLargeError
from shared.events.model import Event, change_identity, event_type, parse_resource

ENVELOPE_VERSION = 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


@dataclass(frozen=True)
class NotificationLimits:
    """Bounds on untrusted notification input; defaults are far above what Graph sends."""

    max_body_bytes: int = 1024 * 1024  # a Graph POST carries at most a few hundred small items
    max_items: int = 1000  # per POST or queue message
    max_field_chars: int = 2048  # ids, resource paths, timestamps
    max_client_state_chars: int = 255  # Graph's documented maximum
    max_resource_data_bytes: int = 8 * 1024  # basic notifications carry four short properties
    max_resource_data_depth: int = 8
    max_encrypted_content_bytes: int = 32 * 1024  # a message's $select fields, encrypted and base64-encoded


DEFAULT_LIMITS = NotificationLimits()


@dataclass(frozen=True)
class ChangeNotification:
    """One change item: "this resource was created/updated/deleted"."""

    subscription_id: str
    change_type: str
    resource: str
    tenant_id: str | None = None
    resource_data: Mapping[str, Any] | None = None
    subscription_expiration: str | None = None
    notification_id: str | None = None
    client_state: str | None = field(default=None, repr=False)  # secret: never printed
    encrypted_content: Mapping[str, Any] | None = field(default=None, repr=False)  # rich: still encrypted
    decrypted: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)  # rich: the resource

    @property
    def resource_data_id(self) -> str | None:
        value = (self.resource_data or {}).get("id")
        return value if isinstance(value, str) else None

    @property
    def etag(self) -> str | None:
        value = (self.resource_data or {}).get("@odata.etag")
        return value if isinstance(value, str) else None

    def identity(self, received_at: datetime) -> str:
        """The dedupe identity (see ``change_identity``): Graph redelivers identical items."""
        path = parse_resource(self.resource)
        return change_identity(
            path.kind,
            path.item_id or self.resource_data_id,
            self.change_type,
            etag=self.etag,
            received_at=received_at,
            notification_id=self.notification_id,
            fallback=self.resource.lower(),
        )

    def to_event(self, received_at: datetime) -> Event:
        """The normalized event: named by the resource's kind (``Users/{id}/Messages/{id}`` → messages)."""
        path = parse_resource(self.resource)
        message_id = (path.item_id or self.resource_data_id) if path.kind == "messages" else None
        return Event(
            id=self.identity(received_at),
            type=event_type(path.kind, self.change_type),
            resource=self.resource,
            change_type=self.change_type,
            subscription_id=self.subscription_id,
            tenant_id=self.tenant_id,
            user_id=path.user_id,
            message_id=message_id,
            received_at=received_at,
            source="notification",
            data=self.decrypted,
        )

    def to_wire(self) -> dict[str, Any]:
        """Graph's item shape without ``clientState`` (the secret is checked once and never stored)."""
        wire: dict[str, Any] = {
            "subscriptionId": self.subscription_id,
            "changeType": self.change_type,
            "resource": self.resource,
        }
        _put(wire, "tenantId", self.tenant_id)
        _put(wire, "resourceData", dict(self.resource_data) if self.resource_data is not None else None)
        _put(wire, "subscriptionExpirationDateTime", self.subscription_expiration)
        _put(wire, "id", self.notification_id)
        _put(wire, "encryptedContent", dict(self.encrypted_content) if self.encrypted_content is not None else None)
        return wire


@dataclass(frozen=True)
class LifecycleNotification:
    """One lifecycle item: the subscription itself needs attention."""

    subscription_id: str
    lifecycle_event: str
    tenant_id: str | None = None
    resource: str | None = None
    subscription_expiration: str | None = None
    notification_id: str | None = None
    client_state: str | None = field(default=None, repr=False)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"subscriptionId": self.subscription_id, "lifecycleEvent": self.lifecycle_event}
        _put(wire, "tenantId", self.tenant_id)
        _put(wire, "resource", self.resource)
        _put(wire, "subscriptionExpirationDateTime", self.subscription_expiration)
        _put(wire, "id", self.notification_id)
        return wire


Notification = ChangeNotification | LifecycleNotification


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def message_text(body: bytes | str) -> str:
    """A queue message's text; bytes that are not UTF-8 (not written by us) keep replacement characters."""
    return body if isinstance(body, str) else body.decode("utf-8", "replace")


def decode_json(data: bytes | str, what: str, max_bytes: int) -> Any:
    """Strict UTF-8 JSON with a size bound; every way it can be wrong is an ``InvalidInputError``.

    ``RecursionError`` covers absurd nesting (``[[[[…``); NaN/Infinity are refused because other
    JSON readers downstream would reject them.
    """
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise PayloadTooLargeError(f"{what} is {size} bytes; at most {max_bytes} are accepted")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{what} is not UTF-8") from error
    except (ValueError, RecursionError) as error:
        raise InvalidInputError(f"{what} is not valid JSON (or nests too deeply)") from error


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _array(document: Any, key: str, what: str, limits: NotificationLimits) -> list[Any]:
    if not isinstance(document, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    items = document.get(key)
    if not isinstance(items, list):
        raise InvalidInputError(f"{what} must have a '{key}' array")
    if len(items) > limits.max_items:
        raise InvalidInputError(f"{what} has {len(items)} items; at most {limits.max_items} are accepted")
    return items


def parse_body(body: bytes, limits: NotificationLimits = DEFAULT_LIMITS) -> list[Any]:
    """The raw items of a webhook POST (``{"value": [...]}``); each still needs ``parse_item``."""
    return parse_post(body, limits)[0]


def parse_post(body: bytes, limits: NotificationLimits = DEFAULT_LIMITS) -> tuple[list[Any], Any]:
    """The raw items of a webhook POST and its ``validationTokens`` (as sent: checked by shared/richdata)."""
    document = decode_json(body, "the notification body", limits.max_body_bytes)
    return _array(document, "value", "the body", limits), document.get("validationTokens")


@dataclass(frozen=True)
class QueueEnvelope:
    """One queue message as the webhook wrote it: when the POST arrived, and its raw items."""

    received_at: datetime
    items: list[Any]


def encode_envelope(received_at: datetime, item_json: list[str]) -> str:
    """The queue message text for already-serialized items (the packer measures them first)."""
    head = json.dumps({"v": ENVELOPE_VERSION, "received_at": received_at.isoformat()}, separators=(",", ":"))
    return head[:-1] + ',"items":[' + ",".join(item_json) + "]}"


def parse_envelope(message: bytes | str, limits: NotificationLimits = DEFAULT_LIMITS) -> QueueEnvelope:
    """A queue message back into its envelope; ``InvalidInputError`` if it is not one we wrote."""
    document = decode_json(message, "the queue message", limits.max_body_bytes)
    items = _array(document, "items", "the queue message", limits)
    if document.get("v") != ENVELOPE_VERSION:
        raise InvalidInputError(f"the queue message has version {document.get('v')!r}; expected {ENVELOPE_VERSION}")
    raw_time = document.get("received_at")
    try:
        received_at = datetime.fromisoformat(raw_time) if isinstance(raw_time, str) else None
    except ValueError:
        received_at = None
    if received_at is None or received_at.tzinfo is None:
        raise InvalidInputError("the queue message needs 'received_at' as an ISO 8601 time with offset")
    return QueueEnvelope(received_at.astimezone(UTC), items)


def parse_item(raw: Any, limits: NotificationLimits = DEFAULT_LIMITS) -> Notification:
    """One item in Graph's shape → a typed notification, or ``InvalidInputError`` saying why not."""
    if not isinstance(raw, dict):
        raise InvalidInputError("a notification must be a JSON object")
    has_change, has_lifecycle = "changeType" in raw, "lifecycleEvent" in raw
    if has_change == has_lifecycle:
        raise InvalidInputError("a notification needs exactly one of 'changeType' and 'lifecycleEvent'")
    subscription_id = _required_text(raw, "subscriptionId", limits.max_field_chars)
    tenant_id = _text(raw, "tenantId", limits.max_field_chars)
    expiration = _text(raw, "subscriptionExpirationDateTime", limits.max_field_chars)
    notification_id = _text(raw, "id", limits.max_field_chars)
    client_state = _client_state(raw, limits)
    if has_lifecycle:
        return LifecycleNotification(
            subscription_id=subscription_id,
            lifecycle_event=_name(raw, "lifecycleEvent"),
            tenant_id=tenant_id,
            resource=_text(raw, "resource", limits.max_field_chars),
            subscription_expiration=expiration,
            notification_id=notification_id,
            client_state=client_state,
        )
    return ChangeNotification(
        subscription_id=subscription_id,
        change_type=_name(raw, "changeType"),
        resource=_required_text(raw, "resource", limits.max_field_chars),
        tenant_id=tenant_id,
        resource_data=_resource_data(raw, limits),
        subscription_expiration=expiration,
        notification_id=notification_id,
        client_state=client_state,
        encrypted_content=_encrypted_content(raw, limits),
    )


def _encrypted_content(raw: Mapping[str, Any], limits: NotificationLimits) -> dict[str, Any] | None:
    """A flat object of short strings (its fields are checked when it is decrypted), bounded in size."""
    value = raw.get("encryptedContent")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInputError("'encryptedContent' must be an object of strings")
    if sum(len(k) + len(v) for k, v in value.items()) > limits.max_encrypted_content_bytes:
        raise InvalidInputError(f"'encryptedContent' is over {limits.max_encrypted_content_bytes} characters")
    return value


def _text(raw: Mapping[str, Any], key: str, max_chars: int) -> str | None:
    """An optional bounded string without control characters or unpaired surrogates."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_chars or _CONTROL.search(value):
        raise InvalidInputError(f"'{key}' must be a string of 1 to {max_chars} printable characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInputError(f"'{key}' contains unpaired surrogates") from error
    return value


def _required_text(raw: Mapping[str, Any], key: str, max_chars: int) -> str:
    value = _text(raw, key, max_chars)
    if value is None:
        raise InvalidInputError(f"'{key}' is required")
    return value


def _name(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInputError(f"'{key}' must be a short alphanumeric name")
    return value


def _client_state(raw: Mapping[str, Any], limits: NotificationLimits) -> str | None:
    value = raw.get("clientState")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limits.max_client_state_chars:
        raise InvalidInputError(f"'clientState' must be a string of at most {limits.max_client_state_chars} chars")
    return value


def _resource_data(raw: Mapping[str, Any], limits: NotificationLimits) -> dict[str, Any] | None:
    value = raw.get("resourceData")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError("'resourceData' must be an object")
    if not _within_depth(value, limits.max_resource_data_depth):
        raise InvalidInputError(f"'resourceData' nests deeper than {limits.max_resource_data_depth} levels")
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InvalidInputError("'resourceData' contains unpaired surrogates") from error
    if size > limits.max_resource_data_bytes:
        raise InvalidInputError(f"'resourceData' is {size} bytes; at most {limits.max_resource_data_bytes}")
    for key in ("id", "@odata.etag"):
        if key in value:
            _required_text(value, key, limits.max_field_chars)
    return value


def _within_depth(value: Any, max_depth: int) -> bool:
    """Containers nest at most ``max_depth`` deep; iterative, so no input can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            if depth > max_depth:
                return False
            stack.extend((child, depth + 1) for child in (current.values() if isinstance(current, dict) else current))
    return True
